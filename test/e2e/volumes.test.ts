// Volume sets end to end on the emulator, with the CLI as a script runs it: a
// 64 MiB disk image written at random by a busy process, paused with SIGSTOP
// around `tidemark task --action ebs-snapshot --wait`, resumed. Each EBS
// snapshot, read back block by block through the EBS direct API fake, equals
// the image as it was at its marker; the second holds only the blocks that
// changed since the first. A file set replicates alongside.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { EBSClient } from "@aws-sdk/client-ebs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import type { TaskResult } from "../../contract/tasks.ts";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { clientConfig } from "../../lambdas/aws-clients.ts";
import { EbsSnapshotAction } from "../../lambdas/volumes/ebs-snapshot.ts";
import { tidemark } from "../support/cli.ts";
import { startFakeEbs, type FakeEbs } from "../../lambdas/local/ebs-standin.ts";
import { eventually, REGION, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, readHead, tempDir } from "../support/tree.ts";

const WORKLOAD = fileURLToPath(new URL("../support/disk-workload.ts", import.meta.url));
const IMAGE_BYTES = 64 * 1024 * 1024;
const GIB = 1024 ** 3;

let cloud: TestCloud;
let ebs: FakeEbs;
let agent: RunningAgent | undefined;
const work = tempDir();
const image = join(work.path, "disk.img");
const src = join(work.path, "files");
let config: string;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Indexes of the blocks that differ between two images of the same size. */
function differingBlocks(a: Buffer, b: Buffer): number[] {
  const out: number[] = [];
  for (let index = 0; index * BLOCK_SIZE < a.length; index++) {
    const at = index * BLOCK_SIZE;
    if (!a.subarray(at, at + BLOCK_SIZE).equals(b.subarray(at, at + BLOCK_SIZE))) out.push(index);
  }
  return out;
}

/** The EBS snapshot read back block by block through the fake: the image it holds (its first `bytes`), and zeros past them. */
function ebsImage(snapshotId: string, bytes: number): { image: Buffer; zerosPast: boolean } {
  const out = Buffer.alloc(bytes);
  const snapshot = ebs.snapshots.get(snapshotId);
  if (!snapshot) throw new Error(`no EBS snapshot ${snapshotId}`);
  let zerosPast = true;
  for (let index = 0; index < (snapshot.volumeSize * GIB) / BLOCK_SIZE; index++) {
    const block = ebs.readBlock(snapshotId, index);
    if (!block) continue;
    if (index * BLOCK_SIZE < bytes) block.copy(out, index * BLOCK_SIZE, 0, Math.min(BLOCK_SIZE, bytes - index * BLOCK_SIZE));
    else if (block.some((byte) => byte !== 0)) zerosPast = false;
  }
  return { image: out, zerosPast };
}

beforeAll(async () => {
  ebs = await startFakeEbs();
  const ebsClient = new EBSClient(clientConfig({ region: REGION, endpoint: ebs.endpoint }));
  cloud = await startTestCloud({ tasks: (store) => ({ actions: { "ebs-snapshot": new EbsSnapshotAction(ebsClient, store) } }) });
  // Some data to start from, the rest of the image sparse (zeros).
  const handle = await open(image, "w");
  await handle.truncate(IMAGE_BYTES);
  for (let at = 0; at < IMAGE_BYTES; at += 16 * BLOCK_SIZE) await handle.write(Buffer.alloc(BLOCK_SIZE, at % 251), 0, BLOCK_SIZE, at);
  await handle.close();
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, "notes.txt"), "beside the disk\n");
  config = cloud.writeConfig(
    work.path,
    [
      { name: "vm", type: "volume", path: "disk.img", scanSeconds: 5 },
      { name: "files", path: "files" },
    ],
    { ebsEndpoint: ebs.endpoint },
  );
  agent = await startAgent(loadConfig(config), silentLogger);
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  await ebs?.stop();
  work.remove();
});

describe("ebs-snapshot markers on a busy disk image", () => {
  it("cut EBS snapshots equal to the image at each marker, the second holding only what changed", async () => {
    const app: ChildProcess = spawn(process.execPath, [WORKLOAD, image, "7"], { stdio: "ignore" });
    const taken: { id: string; picture: Buffer }[] = [];
    try {
      let stamp = statSync(image, { bigint: true }).mtimeNs;
      for (const round of [1, 2]) {
        // The workload wrote since the last picture (a node slow to start on a busy machine has not), then writes on.
        await eventually(async () => expect(statSync(image, { bigint: true }).mtimeNs).not.toBe(stamp), 60_000, 50);
        await sleep(1_000);
        app.kill("SIGSTOP");
        // SIGSTOP lands between system calls: every write the process made is in the page cache now.
        await sleep(20);
        const picture = readFileSync(image);
        stamp = statSync(image, { bigint: true }).mtimeNs;
        writeFileSync(join(src, `round-${round}.txt`), `round ${round}\n`);
        const task = await tidemark(["task", "vm", "--action", "ebs-snapshot", "--label", `round-${round}`, "--wait", "--json", "--config", config]);
        app.kill("SIGCONT");
        expect(task.stderr).toBe("");
        expect(task.code).toBe(0);
        const outcome = JSON.parse(task.stdout) as { result: TaskResult };
        expect(outcome.result).toMatchObject({ status: "succeeded", action: "ebs-snapshot", label: `round-${round}` });
        taken.push({ id: String(outcome.result.outputs.ebsSnapshotId), picture });
      }
      await sleep(500);
      expect(app.exitCode, "the workload died").toBeNull();
    } finally {
      app.kill("SIGKILL");
    }

    const [first, second] = taken;
    if (!first || !second) throw new Error("two snapshots expected");
    expect(ebs.refused).toEqual([]);
    for (const { id, picture } of taken) {
      const readBack = ebsImage(id, IMAGE_BYTES);
      expect(readBack.image.equals(picture), `EBS snapshot ${id} differs from the image at its marker`).toBe(true);
      expect(readBack.zerosPast).toBe(true);
      expect(ebs.snapshots.get(id)).toMatchObject({ status: "completed", volumeSize: 1, tags: { "tidemark:set": "vm" } });
    }
    const changed = differingBlocks(first.picture, second.picture);
    expect(changed.length).toBeGreaterThan(0);
    expect(ebs.snapshots.get(second.id)?.parentId).toBe(first.id);
    expect([...(ebs.snapshots.get(second.id)?.putBlocks.keys() ?? [])].sort((a, b) => a - b)).toEqual(changed);

    // Read back through the CLI too: ListSnapshotBlocks and GetSnapshotBlock, as at a failover drill.
    const to = join(work.path, "restored.img");
    const restore = await tidemark(["restore", "vm", "--snapshot", first.id, "--to", to, "--config", config]);
    expect(restore.stderr).not.toMatch(/tidemark:/);
    expect(restore.code).toBe(0);
    expect(restore.stdout).toMatch(new RegExp(`^restored EBS snapshot ${first.id} of set vm to \\S+: 1\\.0 GiB volume`));
    expect(restore.stderr).toMatch(/restoring \d+\/\d+ blocks/);
    const restored = await readHead(to, IMAGE_BYTES);
    expect(restored.size).toBe(GIB);
    expect(restored.head.equals(first.picture)).toBe(true);

    // The file set beside it kept replicating.
    await eventually(async () => expect(await pictureOfTarget(cloud.store, "files")).toEqual(await pictureOfSource(src)));
  }, 240_000);
});
