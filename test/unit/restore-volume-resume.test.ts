// A volume restore from the block store whose block reads are cut off
// mid-way (a reset connection): each is read on with a ranged GET from where
// it stopped, a few times, as a file's content is; the image restores byte
// for byte. Cut off more often than that, the restore fails naming why and
// leaves no image. A block read whole (an EBS snapshot's) is read again the
// same number of times, and not at all for a wrong checksum or a refusal.

import { randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { retryCutOff } from "../../agent/restore-blocks.ts";
import { restoreVolumeSnapshot } from "../../agent/restore-volume.ts";
import { RestoreError } from "../../agent/restore.ts";
import { blockDataPrefix } from "../../contract/layout.ts";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { ObjectStream, ReadStreamOptions } from "../../lambdas/store/store.ts";
import { readSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { VOLUME_SET as SET, volumeHarness, type VolumeHarness } from "../support/volume-harness.ts";

/** A memory store whose streamed reads of blocks break off, as a reset connection, after `cutAt` bytes while `cuts` lasts; logs each block read ("@offset"). */
class CuttingStore extends MemoryStore {
  cuts = 0;
  cutAt = 1000;
  readonly reads: string[] = [];
  override async readStream(key: string, options: ReadStreamOptions = {}): Promise<ObjectStream | undefined> {
    const stream = await super.readStream(key, options);
    if (!key.startsWith(blockDataPrefix(SET)) || !stream) return stream;
    this.reads.push(`@${options.offset ?? 0}`);
    if (this.cuts === 0) return stream;
    this.cuts -= 1;
    const cut = this.cutAt;
    const body = stream.body;
    return {
      ...stream,
      body: (async function* () {
        let sent = 0;
        for await (const chunk of body) {
          if (sent + chunk.length > cut) {
            yield chunk.subarray(0, cut - sent);
            throw Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET" });
          }
          sent += chunk.length;
          yield chunk;
        }
      })(),
    };
  }
}

let h: VolumeHarness | undefined;
afterEach(() => {
  h?.close();
  h = undefined;
});

async function snapshotOf(store: CuttingStore, image: Buffer) {
  h = volumeHarness(image, undefined, store);
  await h.agent.start();
  await h.agent.drain(SET);
  const marker = await h.marker("snapshot");
  return readSnapshot(store, SET, String(marker.outputs.snapshotId));
}

describe("a volume restore's block read cut off mid-way", () => {
  it("is read on from where it stopped, and the image restores byte for byte", async () => {
    const store = new CuttingStore();
    const image = randomBytes(2 * BLOCK_SIZE);
    const summary = await snapshotOf(store, image);
    store.reads.length = 0;
    // Each block's first read breaks off at 1000 bytes.
    store.cuts = 2;
    const to = join(h?.dir.path ?? "", "restored.img");
    const result = await restoreVolumeSnapshot(store, summary, to);
    expect(result).toMatchObject({ blocks: 2, bytes: 2 * BLOCK_SIZE });
    expect(readFileSync(to).equals(image)).toBe(true);
    expect(store.reads.sort()).toEqual(["@0", "@0", "@1000", "@1000"]);
  });

  it("fails after a few tries, naming why, and leaves no image", async () => {
    const store = new CuttingStore();
    const summary = await snapshotOf(store, randomBytes(BLOCK_SIZE));
    store.cuts = 10;
    const dir = h?.dir.path ?? "";
    const to = join(dir, "restored.img");
    await expect(restoreVolumeSnapshot(store, summary, to)).rejects.toThrow(/ECONNRESET/);
    expect(existsSync(to)).toBe(false);
    expect(readdirSync(dir).filter((name) => name.startsWith("restored"))).toEqual([]);
  });
});

describe("a block read whole (EBS) cut off mid-way", () => {
  const reset = () => Object.assign(new Error("aborted"), { code: "ECONNRESET" });

  it("is read again, a few times", async () => {
    let calls = 0;
    const read = async () => {
      calls += 1;
      if (calls <= 3) throw reset();
      return "block";
    };
    expect(await retryCutOff(read)).toBe("block");
    expect(calls).toBe(4);
  });

  it("fails after that, and at once for a wrong size or checksum or a refusal", async () => {
    let calls = 0;
    await expect(
      retryCutOff(async () => {
        calls += 1;
        throw reset();
      }),
    ).rejects.toThrow("aborted");
    expect(calls).toBe(4);
    calls = 0;
    await expect(
      retryCutOff(async () => {
        calls += 1;
        throw new RestoreError("block 3 of EBS snapshot snap-1 does not match its checksum");
      }),
    ).rejects.toThrow(/does not match its checksum/);
    expect(calls).toBe(1);
    calls = 0;
    await expect(
      retryCutOff(async () => {
        calls += 1;
        throw Object.assign(new Error("denied"), { name: "AccessDeniedException", $metadata: { httpStatusCode: 403 } });
      }),
    ).rejects.toThrow("denied");
    expect(calls).toBe(1);
  });
});
