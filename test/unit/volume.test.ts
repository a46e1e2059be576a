// Volume sets through the whole pipeline on an in-memory target: block
// scans against the index, zeros sent as zeros, block snapshots at markers
// that restore byte for byte after the volume moved on, resizes, resyncs,
// and sweeps of block content nothing refers to any more.

import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, readSync, renameSync, truncateSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { checkSources, loadConfig } from "../../agent/config.ts";
import { recoverSet, runMirror } from "../../agent/operations.ts";
import { isEbsSnapshotId, restoreVolumeSnapshot } from "../../agent/restore-volume.ts";
import { volumeScan } from "../../agent/volume.ts";
import { blockDataKey, blockDataPrefix, initialStatus, volumeStateKey } from "../../contract/layout.ts";
import { BLOCK_SIZE, encodeInline, zeroBlockSha256 } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { VolumeMap } from "../../lambdas/volumes/block-map.ts";
import { readSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { eventually } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";
import { canUseLoopDevices, VOLUME_SET as SET, volumeHarness, type VolumeHarness } from "../support/volume-harness.ts";
import { signedIncoming } from "../support/messages.ts";

/** An image of `blocks` blocks: random ones, and every third one zeros. */
function imageOf(blocks: number, tail = 0): Buffer {
  const image = Buffer.alloc(blocks * BLOCK_SIZE + tail);
  for (let i = 0; i < blocks; i++) if (i % 3 !== 0) randomBytes(BLOCK_SIZE).copy(image, i * BLOCK_SIZE);
  if (tail > 0) randomBytes(tail).copy(image, blocks * BLOCK_SIZE);
  return image;
}

function writeAt(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

async function restored(h: VolumeHarness, snapshotId: string): Promise<Buffer> {
  const to = join(h.dir.path, `restore-${snapshotId}.img`);
  await restoreVolumeSnapshot(h.store, await readSnapshot(h.store, SET, snapshotId), to);
  return readFileSync(to);
}

describe("volume sets", () => {
  let h: VolumeHarness;
  let image: Buffer;

  beforeEach(async () => {
    image = imageOf(12);
    h = volumeHarness(image);
    await h.agent.start();
    await h.agent.drain(SET);
  });
  afterEach(() => h.close());

  it("replicates the blocks of an image, sending zero blocks without data", async () => {
    // 12 blocks, 4 of them zeros: 8 blocks of data crossed, and the zeros not at all (the target starts from zeros).
    expect(h.transport.stagedBytes).toBe(8 * BLOCK_SIZE);
    const first = await h.marker("snapshot", "initial");
    expect(first.status).toBe("succeeded");
    expect(first.outputs).toMatchObject({ blocks: 8, bytes: 8 * BLOCK_SIZE });
    expect((await restored(h, String(first.outputs.snapshotId))).equals(image)).toBe(true);
  });

  it("journals only the block a small write changed, and a block that became zeros as zeros", async () => {
    writeAt(h.image, 5 * BLOCK_SIZE + 4096, randomBytes(64 * 1024));
    writeAt(h.image, 7 * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE));
    const staged = h.transport.stagedBytes;
    const report = await volumeScan(h.journal, h.spec, { full: true });
    expect(report).toMatchObject({ entries: 12, changes: 2, bytes: BLOCK_SIZE });
    await h.agent.drain(SET);
    expect(h.transport.stagedBytes - staged).toBe(BLOCK_SIZE);
    const snapshot = await h.marker();
    expect((await restored(h, String(snapshot.outputs.snapshotId))).equals(readFileSync(h.image))).toBe(true);
  });

  it("skips reading an image whose size, mtime and inode did not move, except at a marker", async () => {
    // The first scan was within the racy window of the image's write: backdate it so its stamp is trusted.
    truncateSync(h.image, image.length);
    const past = new Date(Date.now() - 60_000);
    utimesSync(h.image, past, past);
    await volumeScan(h.journal, h.spec);
    expect((await volumeScan(h.journal, h.spec)).entries).toBe(0);
    expect((await volumeScan(h.journal, h.spec, { full: true })).entries).toBe(12);
  });

  it("restores an old snapshot byte for byte after the volume was overwritten", async () => {
    const before = readFileSync(h.image);
    const first = await h.marker("snapshot", "before");
    for (let i = 0; i < 12; i += 2) writeAt(h.image, i * BLOCK_SIZE + 100, randomBytes(1000));
    const second = await h.marker("snapshot", "after");
    expect((await restored(h, String(first.outputs.snapshotId))).equals(before)).toBe(true);
    expect((await restored(h, String(second.outputs.snapshotId))).equals(readFileSync(h.image))).toBe(true);
  });

  it("follows an image that grows and shrinks, including a short last block", async () => {
    writeAt(h.image, 12 * BLOCK_SIZE, randomBytes(BLOCK_SIZE + 777));
    const grown = await h.marker();
    const grownRestore = await restored(h, String(grown.outputs.snapshotId));
    expect(grownRestore.length).toBe(13 * BLOCK_SIZE + 777);
    expect(grownRestore.equals(readFileSync(h.image))).toBe(true);
    truncateSync(h.image, 3 * BLOCK_SIZE + 10);
    const shrunk = await h.marker();
    expect((await restored(h, String(shrunk.outputs.snapshotId))).equals(readFileSync(h.image))).toBe(true);
    expect((await readSnapshot(h.store, SET, String(shrunk.outputs.snapshotId))).volume).toMatchObject({ size: 3 * BLOCK_SIZE + 10 });
  });

  it("rebuilds the target's blocks from zeros after a resync", async () => {
    writeAt(h.image, 2 * BLOCK_SIZE, randomBytes(BLOCK_SIZE));
    await h.agent.fullMirror(SET, "test resync");
    await h.agent.drain(SET);
    const snapshot = await h.marker();
    expect((await restored(h, String(snapshot.outputs.snapshotId))).equals(readFileSync(h.image))).toBe(true);
  });

  it("keeps block content a kept snapshot names, and sweeps what only pruned ones did", async () => {
    // Snapshots alone: with point-in-time history on, prune leaves block content to the history's retention.
    await h.close();
    h = volumeHarness(image, undefined, undefined, { history: { days: 0 } });
    await h.agent.start();
    await h.agent.drain(SET);
    const first = await h.marker();
    writeAt(h.image, 1 * BLOCK_SIZE, randomBytes(BLOCK_SIZE));
    await h.marker();
    const contentKeys = () => [...h.store.objects.keys()].filter((k) => k.startsWith(blockDataPrefix(SET)));
    // 8 blocks of data, one replaced: the old content stays for the first snapshot.
    expect(contentKeys()).toHaveLength(9);
    expect((await restored(h, String(first.outputs.snapshotId))).equals(image)).toBe(true);
    await h.agent.journalPrune(SET, 1);
    await h.agent.drain(SET);
    expect(contentKeys()).toHaveLength(8);
  });

  it("recovers an out-of-sync volume, and mirrors one, by reading it all again whatever the mode", async () => {
    const unused = async () => {
      throw new Error("a volume has no verification");
    };
    const deps = { agent: h.agent, readReport: unused, readPruneReport: unused, targetStatus: async (set: string) => initialStatus(set), pollMs: 1, timeoutMs: 1000 };
    writeAt(h.image, 6 * BLOCK_SIZE, randomBytes(BLOCK_SIZE));
    await recoverSet(deps, SET, "test", "diff", "report");
    const mirrored = await runMirror(deps, SET, "checksum", "report");
    expect(mirrored.scan).toMatchObject({ entries: 12 });
    await h.agent.drain(SET);
    const snapshot = await h.marker();
    expect((await restored(h, String(snapshot.outputs.snapshotId))).equals(readFileSync(h.image))).toBe(true);
  });

  it("replicates a volume larger than its image when sizeGiB says so, and refuses an image larger than sizeGiB", async () => {
    const sized = { ...h.spec, volume: { scanMs: 60_000, sizeBytes: 1024 ** 3 } };
    const report = await volumeScan(h.journal, sized, { full: true });
    expect(report.entries).toBe(2048);
    // Past the image it reads as zeros: only the last block, carrying the new size, is journaled.
    expect(report.changes).toBe(1);
    await h.agent.drain(SET);
    expect((await VolumeMap.open(h.store, SET)).state.size).toBe(1024 ** 3);
    await expect(volumeScan(h.journal, { ...h.spec, volume: { scanMs: 60_000, sizeBytes: BLOCK_SIZE } })).rejects.toThrow(/holds 6291456 bytes, more than the set's sizeGiB/);
  });

  it("restores an image only over nothing, unless forced", async () => {
    const first = await h.marker();
    const summary = await readSnapshot(h.store, SET, String(first.outputs.snapshotId));
    const to = join(h.dir.path, "taken.img");
    writeFileSync(to, "someone's file");
    await expect(restoreVolumeSnapshot(h.store, summary, to)).rejects.toThrow(/exists; restore to a new file, or pass --force/);
    expect(readFileSync(to, "utf8")).toBe("someone's file");
    await restoreVolumeSnapshot(h.store, summary, to, { force: true });
    expect(readFileSync(to).equals(image)).toBe(true);
  });

  it("refuses a verification of a volume set with a clear error", async () => {
    await expect(h.agent.journalVerify(SET, { deep: false, orphans: "report" })).rejects.toThrow(/is a volume: verify is for file sets/);
    expect(h.store.objects.has(volumeStateKey(SET))).toBe(true);
  });
});

describe("volume sets, watched", () => {
  const applied = (h: VolumeHarness) => h.transport.outcomes.filter((o) => o.kind === "applied").length;

  it("reads an image again as soon as the watcher sees a write to it", async () => {
    const h = volumeHarness(imageOf(4), undefined, undefined, { monitorEnabled: true });
    try {
      await h.agent.start();
      await h.agent.drain(SET);
      const before = applied(h);
      writeAt(h.image, BLOCK_SIZE + 10, randomBytes(100));
      // The interval is a minute: only the watch can have noticed.
      await eventually(async () => expect(applied(h)).toBeGreaterThan(before), 5_000, 20);
    } finally {
      await h.close();
    }
  });

  it("reads it on the set's interval when no watcher event comes (a device, or an image replaced by a new file)", async () => {
    const h = volumeHarness(imageOf(4), undefined, undefined, { monitorEnabled: true, scanMs: 300, watchVolume: () => ({ close: async () => undefined }) });
    try {
      await h.agent.start();
      await h.agent.drain(SET);
      const before = applied(h);
      const replacement = Buffer.concat([readFileSync(h.image), randomBytes(BLOCK_SIZE)]);
      writeFileSync(`${h.image}.new`, replacement);
      renameSync(`${h.image}.new`, h.image);
      await eventually(async () => expect(applied(h)).toBeGreaterThan(before), 5_000, 20);
      await h.agent.stop();
      const snapshot = await h.marker();
      expect((await restored(h, String(snapshot.outputs.snapshotId))).equals(replacement)).toBe(true);
    } finally {
      await h.close();
    }
  });
});

describe.skipIf(!canUseLoopDevices())("a block device as a volume set", () => {
  it("reads the device's size from sysfs, journals its blocks, and restores byte for byte", async () => {
    const image = imageOf(8);
    const h = volumeHarness(image, undefined, undefined, { loopDevice: true });
    try {
      expect(h.image).toMatch(/^\/dev\/loop\d+$/);
      await h.agent.start();
      await h.agent.drain(SET);
      writeAt(h.image, 3 * BLOCK_SIZE, randomBytes(4096));
      // A device's writes do not move its mtime: every scan reads it all.
      expect(await volumeScan(h.journal, h.spec)).toMatchObject({ entries: 8, changes: 1 });
      await h.agent.drain(SET);
      const snapshot = await h.marker();
      const device = Buffer.alloc(image.length);
      const fd = openSync(h.image, "r");
      readSync(fd, device, 0, device.length, 0);
      closeSync(fd);
      expect((await restored(h, String(snapshot.outputs.snapshotId))).equals(device)).toBe(true);
    } finally {
      await h.close();
    }
  });
});

describe("block records the applier refuses", () => {
  const block = (extra: Record<string, unknown>) => ({ seq: 1, op: "block", index: 0, volumeSize: 2 * BLOCK_SIZE, sha256: "0".repeat(64), content: { kind: "zero" }, ...extra });
  const body = (records: unknown[]) => JSON.stringify({ v: 1, set: SET, records });

  it.each([
    ["a block past the volume's end", block({ index: 2 }), /block 2 is past the end of a 1048576-byte volume/],
    ["a zero block whose hash is not that of zeros", block({}), /a zero block's sha256 must be that of zeros/],
    ["content that does not match its hash", block({ sha256: "a".repeat(64), content: encodeInline(randomBytes(1000), "none") }), /content of block 0 \(seq 1\) does not match its size and sha256/],
    ["staged content that is not there", block({ sha256: "a".repeat(64), content: { kind: "staged" } }), /staged content of block 0 \(seq 1\) is missing/],
    ["a volume over 64 TiB", block({ volumeSize: 65 * 1024 ** 4 }), /volumeSize/],
  ])("refuses %s, writing nothing", async (_what, record, reason) => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    const good = { ...block({ index: 1, sha256: zeroBlockSha256(BLOCK_SIZE) }), seq: 2 };
    const outcome = await applier.applyMessage(signedIncoming("m", SET, body([record, good])));
    expect(outcome.kind).toBe("rejected");
    if (outcome.kind === "rejected") expect(outcome.error).toMatch(reason);
    expect([...store.objects.keys()].filter((k) => !k.startsWith("state/"))).toEqual([]);
  });
});

describe("the block map", () => {
  it("counts replaced content across messages, until a sweep is due, and a sweep keeps what the map names", async () => {
    const store = new MemoryStore();
    const sha = (n: number) => n.toString(16).padStart(64, "0");
    const size = 100 * BLOCK_SIZE;
    for (let round = 0; round < 12; round++) {
      // One message's worth: 100 blocks rewritten, each with content of its own.
      const map = await VolumeMap.open(store, SET);
      for (let index = 0; index < 100; index++) {
        const hash = sha(round * 1000 + index + 1);
        await store.put(blockDataKey(SET, hash), Buffer.from("x"), {});
        await map.write(index, hash, size);
      }
      await map.flush();
      // 1,024 replaced contents make a sweep worth its listing.
      expect(map.sweepDue).toBe(round * 100 >= 1024);
    }
    const map = await VolumeMap.open(store, SET);
    expect(map.state.replaced).toBe(1100);
    const kept = sha(5000 + 7);
    const swept = await map.sweep(new Set([kept]));
    // 1,200 contents written: the 100 the map names now and the one a kept snapshot names stay.
    expect(swept.deleted).toBe(1099);
    expect((await VolumeMap.open(store, SET)).state.replaced).toBe(0);
    expect(store.objects.has(blockDataKey(SET, kept))).toBe(true);
  });
});

it("tells EBS snapshot ids from tidemark's", () => {
  expect(isEbsSnapshotId("snap-0123456789abcdef0")).toBe(true);
  expect(isEbsSnapshotId("snap-1234abcd")).toBe(true);
  expect(isEbsSnapshotId("snap-20261125T045307Z-9a2480")).toBe(false);
  expect(isEbsSnapshotId("snap-sqs-1234")).toBe(false);
});

describe("volume sets in the config", () => {
  it("reads a volume set's path, sizeGiB and interval, and checks its source before the agent runs", () => {
    const dir = tempDir("tidemark-config-");
    try {
      writeFileSync(join(dir.path, "disk.img"), Buffer.alloc(1024));
      mkdirSync(join(dir.path, "folder"));
      const file = join(dir.path, "tidemark.config.json");
      const write = (sets: unknown[]) => writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "state", sets }));
      write([{ name: "vm", type: "volume", path: "disk.img", sizeGiB: 2, scanSeconds: 30 }, { name: "www", path: "folder" }]);
      const config = loadConfig(file);
      expect(config.sets[0]).toMatchObject({ name: "vm", root: join(dir.path, "disk.img"), volume: { sizeBytes: 2 * 1024 ** 3, scanMs: 30_000 } });
      expect(config.sets[1]?.volume).toBeUndefined();
      expect(() => checkSources(config)).not.toThrow();

      write([{ name: "vm", type: "volume", path: "folder" }]);
      expect(() => checkSources(loadConfig(file))).toThrow(/set "vm": .*folder is neither a block device nor an image file/);
      write([{ name: "www", path: "disk.img" }]);
      expect(() => checkSources(loadConfig(file))).toThrow(/is not a directory \(a disk or image file is a set of "type": "volume"\)/);
      write([{ name: "vm", type: "volume", path: "disk.img", scanSeconds: 1 }]);
      expect(() => loadConfig(file)).toThrow(/sets\.0/);
    } finally {
      dir.remove();
    }
  });
});
