// The README's main command, as a user runs it: `tidemark local --source DIR`
// in a child process; an edit shows up in the bucket; Ctrl-C stops it cleanly;
// a restart on the same state dir carries on where it left off.

import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { afterEach, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { tidemark } from "../support/cli.ts";
import { eventually } from "../support/local-cloud.ts";
import { startLocal, stopLocal, stopLocals } from "../support/local-command.ts";
import { readHead, tempDir } from "../support/tree.ts";

afterEach(stopLocals);

async function objectText(endpoint: string, bucket: string, key: string): Promise<string> {
  const s3 = makeS3Client({ region: "us-east-1", endpoint });
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return (await out.Body?.transformToString()) ?? "";
  } finally {
    s3.destroy();
  }
}

it("replicates a folder with one command, stops on Ctrl-C, and resumes on the same state", async () => {
  const work = tempDir();
  try {
    const source = join(work.path, "my-folder");
    mkdirSync(source);
    writeFileSync(join(source, "before.txt"), "there before the start");
    const state = join(work.path, "state");

    let local = await startLocal(["--state", state, "--source", source]);
    expect(local.stdout()).toContain(`replicating ${source} as set "my-folder" -> s3://tidemark/data/my-folder/`);
    expect(local.endpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const written = JSON.parse(readFileSync(local.config, "utf8")) as { endpoint: string; sets: { name: string; path: string }[] };
    expect(written.endpoint).toBe(local.endpoint);
    expect(written.sets).toEqual([{ name: "my-folder", path: source }]);

    await eventually(async () => expect(await objectText(local.endpoint, local.bucket, "data/my-folder/before.txt")).toBe("there before the start"));
    writeFileSync(join(source, "edited.txt"), "hello from the source");
    await eventually(async () => expect(await objectText(local.endpoint, local.bucket, "data/my-folder/edited.txt")).toBe("hello from the source"));

    // The config it wrote serves the other commands.
    await eventually(async () => {
      const status = await tidemark(["status", "--json", "--config", local.config]);
      expect(status.code).toBe(0);
      const report = JSON.parse(status.stdout) as { sets: { set: string; inSync: boolean }[] };
      expect(report.sets).toEqual([expect.objectContaining({ set: "my-folder", inSync: true })]);
    });

    expect(await stopLocal(local.child)).toBe(0);

    // Changed while stopped: picked up by the scan on restart, on the persisted queue and bucket.
    writeFileSync(join(source, "while-stopped.txt"), "changed while stopped");
    local = await startLocal(["--state", state, "--source", source]);
    await eventually(async () => expect(await objectText(local.endpoint, local.bucket, "data/my-folder/while-stopped.txt")).toBe("changed while stopped"));
    expect(await objectText(local.endpoint, local.bucket, "data/my-folder/edited.txt")).toBe("hello from the source");
    expect(await stopLocal(local.child)).toBe(0);
    expect(local.stderr()).not.toMatch(/error/i);
  } finally {
    work.remove();
  }
});

it("refuses a --source that does not exist with a one-line reason and exit code 2", async () => {
  const work = tempDir();
  try {
    const out = await tidemark(["local", "--port", "0", "--state", join(work.path, "s"), "--source", join(work.path, "missing")]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/^tidemark: --source .*missing does not exist/);
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
  } finally {
    work.remove();
  }
});

it("replicates a disk image as a volume set, cuts EBS snapshots on the local stand-in that survive a restart, and restores from them", async () => {
  const work = tempDir();
  try {
    const image = join(work.path, "vm.img");
    const content = Buffer.alloc(3 * 512 * 1024 + 4096);
    content.write("boot sector", 0);
    content.write("data at the end", content.length - 100);
    writeFileSync(image, content);
    const state = join(work.path, "state");

    let local = await startLocal(["--state", state, "--source", image, "--set", "vm"]);
    expect(local.stdout()).toMatch(/ebs +http:\/\/127\.0\.0\.1:\d+ \(stand-in for the EBS direct APIs/);
    const written = JSON.parse(readFileSync(local.config, "utf8")) as { ebsEndpoint: string; sets: unknown[] };
    expect(written.sets).toEqual([{ name: "vm", type: "volume", path: image }]);
    expect(written.ebsEndpoint).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const task = await tidemark(["task", "vm", "--action", "ebs-snapshot", "--wait", "--json", "--config", local.config]);
    expect(task.stderr).toBe("");
    expect(task.code).toBe(0);
    const { result } = JSON.parse(task.stdout) as { result: { status: string; outputs: { ebsSnapshotId: string; changedBlocks: number } } };
    expect(result.outputs.changedBlocks).toBe(2);
    expect(await stopLocal(local.child)).toBe(0);

    // The EBS snapshot outlives the local cloud: it restores after a restart.
    local = await startLocal(["--state", state]);
    const to = join(work.path, "restored.img");
    const restore = await tidemark(["restore", "vm", "--snapshot", result.outputs.ebsSnapshotId, "--to", to, "--json", "--config", local.config]);
    expect(restore.code).toBe(0);
    expect(JSON.parse(restore.stdout)).toMatchObject({ source: "ebs", blocks: 2, size: 1024 ** 3 });
    expect((await readHead(to, content.length)).head.equals(content)).toBe(true);

    // The same point, rebuilt from the block store instead of EBS.
    const fromBlocks = join(work.path, "from-blocks.img");
    const blocks = await tidemark(["restore", "vm", "--snapshot", "latest", "--to", fromBlocks, "--json", "--config", local.config]);
    expect(blocks.code).toBe(0);
    expect(JSON.parse(blocks.stdout)).toMatchObject({ source: "block-store", blocks: 2, size: content.length });
    expect(readFileSync(fromBlocks).equals(content)).toBe(true);
    const again = await tidemark(["restore", "vm", "--snapshot", "latest", "--to", fromBlocks, "--config", local.config]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/exists; restore to a new file, or pass --force to replace it/);
    expect(await stopLocal(local.child)).toBe(0);
  } finally {
    work.remove();
  }
});
