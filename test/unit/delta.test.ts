// Delta transfer: a change inside a large file travels as the blocks that
// changed, a rename moves the object, and the applier rebuilds and checks.

import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, rmSync, openSync, readFileSync, renameSync, truncateSync, writeFileSync, writeSync, closeSync, appendFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { encodeMeta, META } from "../../contract/layout.ts";
import { BLOCK_SIZE, encodeInline, parseMessage, BadMessageError } from "../../contract/wire.ts";
import { CHUNK_SIZE } from "../../contract/delta-ranges.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";
import { ownerRecordFor, signedIncoming } from "../support/messages.ts";
import { writeOwner } from "../../lambdas/target/owner.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "vm";
const MiB = 1024 * 1024;
/**
 * The large file's size: over a pack (8 MiB) and the S3 multipart threshold, a whole number of 512 KiB blocks,
 * rebuilt in memory (up to 64 MiB) like the 64 MiB it was; 16 MiB instead of 64 spends a quarter of the hashing.
 */
const LARGE = 16 * MiB;
/** Envelope, record fields and base64 of a message: what a delta may add to its blocks. */
const OVERHEAD = 4096;


describe("delta transfer", () => {
  let h: Harness;

  const converge = async () => {
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  };
  /** Bytes sent by one step, the target checked against the source after it. */
  const sentBy = async (step: () => void | Promise<void>) => {
    const before = h.sent();
    await step();
    await converge();
    return h.sent() - before;
  };

  beforeEach(async () => {
    // Pacing of busy large files (busy-files.ts) is not under test: a version of the file is never held behind the
    // previous one's assumed rebuild time, which a quick converge of 16 MiB could be inside of.
    h = agentHarness(SET, { targetStatus: (set) => readSetStatus(h.store, set), busyFiles: { bytesPerSecond: Number.MAX_SAFE_INTEGER } });
    writeFileSync(join(h.src.path, "disk.img"), randomBytes(LARGE));
    await h.agent.start();
    await converge();
  });

  afterEach(() => h.close());

  it("sends one 4 KiB chunk for a 1-byte change in a 16 MiB file", async () => {
    const bytes = await sentBy(() => {
      const fd = openSync(join(h.src.path, "disk.img"), "r+");
      writeSync(fd, Buffer.from([0x5a]), 0, 1, 10 * MiB + 123);
      closeSync(fd);
    });
    expect(bytes).toBeGreaterThanOrEqual(CHUNK_SIZE);
    expect(bytes).toBeLessThanOrEqual(CHUNK_SIZE + OVERHEAD);
    expect(sha((await h.store.get("data/vm/disk.img"))?.body ?? Buffer.alloc(0))).toBe(sha(readFileSync(join(h.src.path, "disk.img"))));
  });

  it("counts a delta's chunks, not the file, in what a scan reports journaled", async () => {
    const fd = openSync(join(h.src.path, "disk.img"), "r+");
    writeSync(fd, Buffer.from([1]), 0, 1, 3 * MiB);
    closeSync(fd);
    expect((await h.agent.scan(SET)).bytes).toBe(CHUNK_SIZE);
  });

  it("sends only the tail of an append, and nothing but metadata for a chmod", async () => {
    const appended = await sentBy(() => appendFileSync(join(h.src.path, "disk.img"), randomBytes(700 * 1024)));
    // LARGE is a whole number of blocks: the append fills one new block and part of another.
    expect(appended).toBeLessThanOrEqual(700 * 1024 + OVERHEAD);
    const chmodded = await sentBy(() => chmodSync(join(h.src.path, "disk.img"), 0o600));
    expect(chmodded).toBeLessThanOrEqual(OVERHEAD);
    expect((await h.store.head("data/vm/disk.img"))?.meta["tidemark-mode"]).toBe("600");
  });

  it("follows a truncation without resending the part that stayed", async () => {
    const bytes = await sentBy(() => truncateSync(join(h.src.path, "disk.img"), 10 * MiB + 5));
    // Only the new, shorter last chunk travels.
    expect(bytes).toBeLessThanOrEqual(CHUNK_SIZE + OVERHEAD);
  });

  it("sends the whole file when most of it changed", async () => {
    const bytes = await sentBy(() => writeFileSync(join(h.src.path, "disk.img"), randomBytes(LARGE)));
    expect(bytes).toBeGreaterThanOrEqual(LARGE);
    expect(readdirSync(h.journal.spoolDir)).toEqual([]);
  });

  it("moves a renamed large file on the target instead of sending it again", async () => {
    const before = h.sent();
    renameSync(join(h.src.path, "disk.img"), join(h.src.path, "disk-renamed.img"));
    h.agent.hint(SET, "disk.img");
    h.agent.hint(SET, "disk-renamed.img");
    await h.agent.processHints(SET);
    await h.agent.drain(SET);
    expect(h.sent() - before).toBeLessThanOrEqual(OVERHEAD);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
    expect(await h.store.head("data/vm/disk.img")).toBeUndefined();
    expect(readdirSync(h.journal.spoolDir)).toEqual([]);
    // The index moved with it: the next change is a delta again.
    const changed = await sentBy(() => {
      const fd = openSync(join(h.src.path, "disk-renamed.img"), "r+");
      writeSync(fd, Buffer.from("x"), 0, 1, 5);
      closeSync(fd);
    });
    expect(changed).toBeLessThanOrEqual(CHUNK_SIZE + OVERHEAD);
  });

  it("renames a large file that left a folder removed in the same batch before the folder's deletes", async () => {
    mkdirSync(join(h.src.path, "sub"));
    renameSync(join(h.src.path, "disk.img"), join(h.src.path, "sub", "disk.img"));
    await converge();
    const before = h.sent();
    renameSync(join(h.src.path, "sub", "disk.img"), join(h.src.path, "moved.img"));
    rmSync(join(h.src.path, "sub"), { recursive: true });
    for (const path of ["sub", "sub/disk.img", "moved.img"]) h.agent.hint(SET, path);
    await h.agent.processHints(SET);
    await h.agent.drain(SET);
    expect((await readSetStatus(h.store, SET)).state).toBe("in-sync");
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
    expect(h.sent() - before).toBeLessThanOrEqual(OVERHEAD);
  });

  it("puts the set out of sync when the target lost the delta's base, and a resync repairs it", async () => {
    // Someone overwrote the replica behind the applier's back.
    await h.store.put("data/vm/disk.img", Buffer.from("tampered"), encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: sha(Buffer.from("tampered")) }));
    const fd = openSync(join(h.src.path, "disk.img"), "r+");
    writeSync(fd, Buffer.from("y"), 0, 1, 0);
    closeSync(fd);
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    const status = await readSetStatus(h.store, SET);
    expect(status.state).toBe("out-of-sync");
    expect(status.reason).toMatch(/delta base of disk\.img is not the content the agent changed/);
    await h.agent.checkTarget(SET);
    await converge();
    expect((await readSetStatus(h.store, SET)).state).toBe("in-sync");
  });
});

describe("delta messages on the wire", () => {
  const base = Buffer.alloc(BLOCK_SIZE * 2 + 10, 1);
  const next = Buffer.from(base);
  next[BLOCK_SIZE + 3] = 9;
  const block1 = next.subarray(BLOCK_SIZE, BLOCK_SIZE * 2);
  const record = (blocks: number[], content: Uint8Array, over: Record<string, unknown> = {}) => ({
    seq: 2,
    op: "put",
    path: "f.img",
    size: next.length,
    mode: 0o644,
    mtimeNs: "5",
    sha256: sha(next),
    content: encodeInline(content),
    delta: { base: sha(base), blocks },
    ...over,
  });
  const body = (r: object) => JSON.stringify({ v: 1, set: "s", records: [r] });

  it.each([
    ["blocks out of order", [1, 0], /increasing order/],
    ["a block past the end", [3], /past the end/],
  ])("refuses %s", (_label, blocks, message) => {
    expect(() => parseMessage(body(record(blocks, block1)))).toThrow(BadMessageError);
    expect(() => parseMessage(body(record(blocks, block1)))).toThrow(message);
  });

  it("rebuilds from the base, and rejects blocks of the wrong length without writing", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    await store.put("data/s/f.img", base, encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: sha(base) }));
    await store.put("state/s/status.json", Buffer.from(JSON.stringify({ set: "s", lastSeq: 1, state: "in-sync", appliedRecords: 1, appliedBytes: 0, updatedAt: "x" })));
    await writeOwner(store, ownerRecordFor("s"));
    const bad = await applier.applyMessage(signedIncoming("m1", "s", body(record([1], block1.subarray(1)))));
    expect(bad.kind).toBe("rejected");
    expect((await store.get("data/s/f.img"))?.body.equals(base)).toBe(true);
    const good = await applier.applyMessage(signedIncoming("m2", "s", body(record([1], block1))));
    expect(good).toMatchObject({ kind: "applied", bytes: BLOCK_SIZE });
    expect((await store.get("data/s/f.img"))?.body.equals(next)).toBe(true);
  });

  it("refuses a metadata-only delta whose base is not the live object, so no object's sha256 names bytes it does not hold", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    await store.put("data/s/f.img", base, encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: sha(base) }));
    await store.put("state/s/status.json", Buffer.from(JSON.stringify({ set: "s", lastSeq: 1, state: "in-sync", appliedRecords: 1, appliedBytes: 0, updatedAt: "x" })));
    await writeOwner(store, ownerRecordFor("s"));
    // Names another content (held by some other file) as both base and result, carrying no bytes.
    const other = sha(Buffer.from("another file's content"));
    const forged = record([], Buffer.alloc(0), { size: base.length, sha256: other, delta: { base: other, blocks: [] } });
    await applier.applyMessage(signedIncoming("m1", "s", body(forged)));
    const live = await store.get("data/s/f.img");
    expect(live?.body.equals(base)).toBe(true);
    expect(live?.meta[META.sha256]).toBe(sha(base));
    const status = await readSetStatus(store, "s");
    expect(status.state).toBe("out-of-sync");
    expect(status.reason).toMatch(/delta base of f\.img is not the content the agent changed/);
    // The same record naming the live content (a chmod) still only replaces the metadata.
    const chmod = record([], Buffer.alloc(0), { seq: 1, size: base.length, mode: 0o600, sha256: sha(base), delta: { base: sha(base), blocks: [] } });
    await store.put("state/s/status.json", Buffer.from(JSON.stringify({ set: "s", lastSeq: 0, state: "in-sync", appliedRecords: 0, appliedBytes: 0, updatedAt: "x" })));
    expect((await applier.applyMessage(signedIncoming("m2", "s", body(chmod)))).kind).toBe("applied");
    expect((await store.get("data/s/f.img"))?.body.equals(base)).toBe(true);
  });

  it("applies a delta again without going out of sync when its message returns before the checkpoint moved", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    const status = Buffer.from(JSON.stringify({ set: "s", lastSeq: 1, state: "in-sync", appliedRecords: 1, appliedBytes: 0, updatedAt: "x" }));
    await store.put("data/s/f.img", base, encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: sha(base) }));
    await store.put("state/s/status.json", status);
    await writeOwner(store, ownerRecordFor("s"));
    expect((await applier.applyMessage(signedIncoming("m1", "s", body(record([1], block1))))).kind).toBe("applied");
    // The invocation died after the write and before the checkpoint: the same message arrives again.
    await store.put("state/s/status.json", status);
    await writeOwner(store, ownerRecordFor("s"));
    expect((await applier.applyMessage(signedIncoming("m1", "s", body(record([1], block1))))).kind).toBe("applied");
    expect((await readSetStatus(store, "s")).state).toBe("in-sync");
    expect((await store.get("data/s/f.img"))?.body.equals(next)).toBe(true);
  });
});
