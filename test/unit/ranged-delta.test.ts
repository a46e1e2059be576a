// Ranged deltas (issue 17): a page write inside a large file travels as the
// 4 KiB chunk it touched, an append as its tail, and the applier rebuilds the
// file (in memory, or streamed for a large one) and checks it end to end.

import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, closeSync, ftruncateSync, openSync, readFileSync, readdirSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { CHUNK_SIZE, MAX_DELTA_RANGES, capRanges, deltaPieces, type ByteRange } from "../../contract/delta-ranges.ts";
import { encodeMeta } from "../../contract/layout.ts";
import { BLOCK_SIZE, BadMessageError, encodeInline, isMarkerMessage, parseMessage } from "../../contract/wire.ts";
import { scanAgainst } from "../../agent/chunk-delta.ts";
import { chunkFingerprints } from "../../agent/chunk-hash.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { applyDelta, DeltaBaseError, type DeltaPut } from "../../lambdas/applier/delta-rebuild.ts";
import { writeOwner } from "../../lambdas/target/owner.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { ownerRecordFor, signedIncoming } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "db";
const MiB = 1024 * 1024;
/** Envelope and record fields of a message, and base64 of inline content: what a delta adds to its bytes. */
const OVERHEAD = 4096;


/** The put records of the messages the transport carried after `from`. */
function putsSince(h: Harness, from: number) {
  return h.transport.bodies
    .slice(from)
    .flatMap((body) => {
      const message = parseMessage(body);
      return isMarkerMessage(message) ? [] : message.records;
    })
    .filter((record) => record.op === "put");
}

function writeAt(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

describe("ranged deltas from the agent", () => {
  let h: Harness | undefined;
  afterEach(() => h?.close());

  /** The busy-file pacing's clock (busy-files.ts): each step comes long after the version before it was sent. */
  let clock = 0;
  const open = async (name: string, write: (path: string) => void) => {
    const harness = agentHarness(SET, { targetStatus: (set) => readSetStatus(harness.store, set), busyFiles: { now: () => clock } });
    h = harness;
    write(join(harness.src.path, name));
    await harness.agent.start();
    await harness.agent.drain(SET);
    return harness;
  };
  const step = async (harness: Harness, change: () => void) => {
    const bodies = harness.transport.bodies.length;
    const before = harness.sent();
    change();
    clock += 3_600_000;
    await harness.agent.scan(SET);
    await harness.agent.drain(SET);
    return { bytes: harness.sent() - before, puts: putsSince(harness, bodies) };
  };
  const targetHolds = async (harness: Harness, name: string) => {
    const object = await harness.store.get(`data/${SET}/${name}`);
    expect(object && sha(object.body)).toBe(sha(readFileSync(join(harness.src.path, name))));
  };

  it("sends only the 4 KiB pages written into a large sparse file, and the target rebuilds it byte for byte (streamed)", async () => {
    // Past the applier's in-memory limit (64 MiB): the target streams the rebuild.
    const size = 66 * MiB + 1000;
    const harness = await open("pages.db", (path) => {
      const fd = openSync(path, "w");
      ftruncateSync(fd, size);
      writeSync(fd, randomBytes(MiB), 0, MiB, 40 * MiB);
      closeSync(fd);
    });
    const pages = [7 * MiB, 40 * MiB + 8 * CHUNK_SIZE, 65 * MiB];
    const { bytes, puts } = await step(harness, () => {
      for (const offset of pages) writeAt(join(harness.src.path, "pages.db"), offset, randomBytes(CHUNK_SIZE));
    });
    expect(puts).toHaveLength(1);
    const [put] = puts;
    expect(put?.op === "put" && put.delta).toEqual({ base: expect.any(String), blocks: [], ranges: pages.map((offset) => [offset, CHUNK_SIZE]) });
    // Random pages do not compress: base64 of three pages, and the message around them.
    expect(bytes).toBeLessThanOrEqual(Math.ceil((3 * CHUNK_SIZE * 4) / 3) + OVERHEAD);
    await targetHolds(harness, "pages.db");
    expect((await readSetStatus(harness.store, SET)).state).toBe("in-sync");

    // More than 1 MiB of pages: spooled while the file is read, staged, read back by the applier a window at a time.
    const many = Array.from({ length: 400 }, (_, i) => (i * 40 + 1) * CHUNK_SIZE);
    const spooled = await step(harness, () => {
      for (const offset of many) writeAt(join(harness.src.path, "pages.db"), offset, randomBytes(CHUNK_SIZE));
    });
    const ranges = spooled.puts.flatMap((p) => (p.op === "put" && p.delta?.ranges) || []);
    expect(ranges).toEqual(many.map((offset) => [offset, CHUNK_SIZE]));
    expect(spooled.bytes).toBeLessThanOrEqual(many.length * CHUNK_SIZE + 4 * OVERHEAD);
    expect(readdirSync(harness.journal.spoolDir)).toEqual([]);
    await targetHolds(harness, "pages.db");
  });

  it("sends what an append added, from the old end of the file (also inside a chunk), never the file again", async () => {
    const harness = await open("app.log", (path) => writeFileSync(path, randomBytes(200 * 1024 + 123)));
    for (let i = 0; i < 4; i++) {
      const path = join(harness.src.path, "app.log");
      const end = readFileSync(path).length;
      const { bytes, puts } = await step(harness, () => appendFileSync(path, randomBytes(1000)));
      expect(puts[0]?.op === "put" && puts[0].delta?.ranges).toEqual([[end, 1000]]);
      expect(bytes).toBeLessThanOrEqual(Math.ceil((1000 * 4) / 3) + OVERHEAD);
      await targetHolds(harness, "app.log");
    }
  });

  it("follows a file indexed before chunk fingerprints by its changed 512 KiB blocks, then by chunks", async () => {
    const harness = await open("old.img", (path) => writeFileSync(path, randomBytes(8 * MiB)));
    // A journal from before chunk fingerprints: the index has block hashes only.
    const db = new DatabaseSync(harness.journal.path);
    db.exec("DELETE FROM chunk_fingerprints");
    db.close();
    const first = await step(harness, () => writeAt(join(harness.src.path, "old.img"), 3 * MiB + 10, randomBytes(100)));
    expect(first.puts[0]?.op === "put" && first.puts[0].delta?.ranges).toEqual([[3 * MiB, BLOCK_SIZE]]);
    await targetHolds(harness, "old.img");
    const second = await step(harness, () => writeAt(join(harness.src.path, "old.img"), 5 * MiB, randomBytes(100)));
    expect(second.puts[0]?.op === "put" && second.puts[0].delta?.ranges).toEqual([[5 * MiB, CHUNK_SIZE]]);
    await targetHolds(harness, "old.img");
  });
});

describe("finding changed chunks", () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it("reuses a block's indexed SHA-256 only when all its chunks match, and finds a shrunk file's short last chunk", async () => {
    const path = join(dir.path, "f.bin");
    const before = randomBytes(3 * BLOCK_SIZE + 100);
    writeFileSync(path, before);
    const first = await scanAgainst(path, { size: 0, blocks: null, chunks: undefined });
    if (!first) throw new Error("a scan without a sink always completes");
    expect(first.sha256).toBe(sha(before));
    expect(first.chunkHashes.equals(chunkFingerprints(before))).toBe(true);
    const after = Buffer.from(before.subarray(0, 2 * BLOCK_SIZE + 50));
    after.writeUInt8(after.readUInt8(BLOCK_SIZE + 5) ^ 0xff, BLOCK_SIZE + 5);
    writeFileSync(path, after);
    const second = await scanAgainst(path, { size: before.length, blocks: first.blockHashes, chunks: first.chunkHashes });
    if (!second) throw new Error("a scan without a sink always completes");
    expect(second.ranges).toEqual([
      [BLOCK_SIZE, CHUNK_SIZE],
      [2 * BLOCK_SIZE, 50],
    ]);
    const blockSha = (i: number) => createHash("sha256").update(after.subarray(i * BLOCK_SIZE, Math.min(after.length, (i + 1) * BLOCK_SIZE))).digest();
    expect(second.blockHashes.equals(Buffer.concat([0, 1, 2].map(blockSha)))).toBe(true);
  });

  it("joins the closest ranges first when there are too many", () => {
    const ranges: ByteRange[] = [
      [0, 10],
      [20, 10],
      [100, 10],
      [115, 5],
    ];
    expect(capRanges(ranges, 2)).toEqual([
      [0, 30],
      [100, 20],
    ]);
    expect(capRanges(ranges, 4)).toEqual(ranges);
    const many = Array.from({ length: MAX_DELTA_RANGES + 10 }, (_, i): ByteRange => [i * 2 * CHUNK_SIZE, CHUNK_SIZE]);
    expect(capRanges(many, MAX_DELTA_RANGES)).toHaveLength(MAX_DELTA_RANGES);
  });

  it("lays out the new file as base and delta pieces", () => {
    expect(deltaPieces(100, [[10, 5], [50, 50]])).toEqual([
      { source: "base", offset: 0, length: 10 },
      { source: "delta", offset: 10, length: 5, from: 0 },
      { source: "base", offset: 15, length: 35 },
      { source: "delta", offset: 50, length: 50, from: 5 },
    ]);
  });
});

describe("ranged delta messages", () => {
  const base = randomBytes(300 * 1024);
  const next = Buffer.concat([base, randomBytes(5000)]);
  next.fill(7, 8192, 8192 + 4096);
  const ranges: ByteRange[] = [
    [8192, 4096],
    [300 * 1024, 5000],
  ];
  const carried = Buffer.concat(ranges.map(([offset, length]) => next.subarray(offset, offset + length)));
  const record = (over: Record<string, unknown> = {}) => ({
    seq: 2,
    op: "put",
    path: "f.db",
    size: next.length,
    mode: 0o644,
    mtimeNs: "5",
    sha256: sha(next),
    content: encodeInline(carried),
    delta: { base: sha(base), blocks: [], ranges },
    ...over,
  });
  const body = (r: object) => JSON.stringify({ v: 1, set: "s", records: [r] });
  const deltaPut = (r: object): DeltaPut => {
    const message = parseMessage(body(r));
    const first = isMarkerMessage(message) ? undefined : message.records[0];
    if (first?.op !== "put" || !first.delta) throw new Error("expected a delta put");
    return { ...first, delta: first.delta };
  };
  const withBase = async () => {
    const store = new MemoryStore();
    await store.put("data/s/f.db", base, encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: sha(base) }));
    await store.put("state/s/status.json", Buffer.from(JSON.stringify({ set: "s", lastSeq: 1, state: "in-sync", appliedRecords: 1, appliedBytes: 0, updatedAt: "x" })));
    await writeOwner(store, ownerRecordFor("s"));
    return store;
  };

  it.each([
    ["overlapping ranges", [[0, 10], [5, 10]], /must not overlap/],
    ["ranges out of order", [[100, 10], [0, 10]], /increasing order/],
    ["a range past the end", [[next.length - 5, 10]], /past the end/],
    ["an empty range", [[0, 0]], /Too small|>=1/],
  ])("refuses %s", (_label, bad, message) => {
    expect(() => parseMessage(body(record({ delta: { base: sha(base), blocks: [], ranges: bad } })))).toThrow(BadMessageError);
    expect(() => parseMessage(body(record({ delta: { base: sha(base), blocks: [], ranges: bad } })))).toThrow(message);
  });

  it("refuses a delta listing both blocks and ranges", () => {
    expect(() => parseMessage(body(record({ delta: { base: sha(base), blocks: [0], ranges } })))).toThrow(/ranges or blocks, not both/);
  });

  it("rebuilds from the base, and rejects content of the wrong length without writing", async () => {
    const store = await withBase();
    const applier = new Applier({ store, log: () => {} });
    const short = await applier.applyMessage(signedIncoming("m1", "s", body(record({ content: encodeInline(carried.subarray(1)) }))));
    expect(short.kind).toBe("rejected");
    expect((await store.get("data/s/f.db"))?.body.equals(base)).toBe(true);
    const good = await applier.applyMessage(signedIncoming("m2", "s", body(record())));
    expect(good).toMatchObject({ kind: "applied", bytes: carried.length });
    expect((await store.get("data/s/f.db"))?.body.equals(next)).toBe(true);
  });

  it("puts the set out of sync, writing nothing, when the rebuilt file does not match its SHA-256", async () => {
    const store = await withBase();
    const applier = new Applier({ store, log: () => {} });
    const wrong = Buffer.from(carried);
    wrong.writeUInt8(wrong.readUInt8(0) ^ 1, 0);
    expect((await applier.applyMessage(signedIncoming("m1", "s", body(record({ content: encodeInline(wrong) }))))).kind).toBe("gap");
    const status = await readSetStatus(store, "s");
    expect(status.state).toBe("out-of-sync");
    expect(status.reason).toMatch(/rebuilt f\.db does not match its sha256/);
    expect((await store.get("data/s/f.db"))?.body.equals(base)).toBe(true);
  });

  it("streams the rebuild of a large file (ranged reads, a checked write), and leaves the base alone when the result is wrong", async () => {
    const store = await withBase();
    const meta = encodeMeta({ kind: "file", mode: 0o600, mtimeNs: "9", sha256: sha(next) });
    const put = deltaPut(record());
    const badPut = deltaPut(record({ sha256: sha(Buffer.from("something else")) }));
    await expect(applyDelta(store, "data/s/f.db", badPut, { bytes: carried }, meta, { inMemoryBytes: 0 })).rejects.toThrow(DeltaBaseError);
    expect((await store.get("data/s/f.db"))?.body.equals(base)).toBe(true);
    await store.put("staging/s/delta", carried);
    await applyDelta(store, "data/s/f.db", put, { staged: "staging/s/delta" }, meta, { inMemoryBytes: 0 });
    const written = await store.get("data/s/f.db");
    expect(written?.body.equals(next)).toBe(true);
    expect(written?.meta["tidemark-mode"]).toBe("600");
  });
});
