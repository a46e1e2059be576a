// A delta describes exactly the bytes its SHA-256 was taken over (issue 17,
// one read): for random files, random changes (many more ranges than a delta
// lists, gaps below, at and past the gap kept, ranges at offset 0 and at the
// end) and random rewrites, growths and truncations while the file is read,
// the file the applier rebuilds from the base and the delta (as
// lambdas/applier/delta-rebuild.ts does) has the put's SHA-256, size, block
// hashes and chunk fingerprints, and the content its contentSha256.

import { createHash, randomBytes } from "node:crypto";
import { closeSync, fstatSync, ftruncateSync, openSync, readFileSync, readdirSync, statSync, writeFileSync, writeSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { capture } from "../../agent/capture.ts";
import { chunkFingerprints } from "../../agent/chunk-hash.ts";
import { CHUNK_SIZE, MAX_DELTA_RANGES, deltaPieces } from "../../contract/delta-ranges.ts";
import { BLOCK_SIZE, deltaRanges } from "../../contract/wire.ts";
import type { Change } from "../../agent/journal.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

type PutChange = Extract<Change, { op: "put" }>;

const SET = "db";
const NAME = "app.db";
const MiB = 1024 * 1024;

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** A seeded generator: a failing trial is reproduced from its seed. */
function generator(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 2 ** 32;
  };
  const int = (min: number, max: number) => min + Math.floor(next() * (max - min + 1));
  const bytes = (length: number) => {
    const out = Buffer.allocUnsafe(length);
    for (let i = 0; i < length; i++) out[i] = int(0, 255);
    return out;
  };
  return { next, int, bytes };
}

type Random = ReturnType<typeof generator>;

function writeAt(path: string, offset: number, bytes: Uint8Array): void {
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, bytes, 0, bytes.length, offset);
  } finally {
    closeSync(fd);
  }
}

/** Changed chunks: more than a delta lists when `many`, separated by gaps of 1 to 7 chunks (the gap kept is 4 here). */
function changedChunks(random: Random, chunks: number, many: boolean): number[] {
  const out: number[] = [];
  let at = random.next() < 0.5 ? 0 : random.int(1, 4);
  const count = many ? random.int(MAX_DELTA_RANGES + 1, MAX_DELTA_RANGES + 400) : random.int(1, 300);
  while (out.length < count && at < chunks) {
    out.push(at);
    const r = random.next();
    at += many ? 1 + (r < 0.8 ? 1 : r < 0.88 ? 2 : r < 0.94 ? 4 : random.int(3, 7)) : random.int(2, 40);
  }
  // Sometimes the last chunk too (the file's end, short when the size is not a multiple of a chunk).
  if (random.next() < 0.5 && (out.at(-1) ?? 0) < chunks - 1) out.push(chunks - 1);
  return out;
}

/** A change to the file while it is read: pages rewritten anywhere, or the file grown or cut. */
function rewrite(random: Random, path: string): void {
  const size = statSync(path).size;
  const r = random.next();
  if (r < 0.1) {
    const fd = openSync(path, "r+");
    try {
      ftruncateSync(fd, Math.max(CHUNK_SIZE, size + random.int(-3 * CHUNK_SIZE - 7, 3 * CHUNK_SIZE + 7)));
    } finally {
      closeSync(fd);
    }
    return;
  }
  for (let n = random.int(1, 30); n > 0; n--) {
    const offset = random.int(0, Math.max(0, size - 1));
    writeAt(path, offset, random.bytes(Math.min(random.int(1, 2 * CHUNK_SIZE), size - offset)));
  }
}

/** The file the applier makes of the base and the put (delta-rebuild.ts rebuildInMemory), checked like the applier checks it. */
function rebuilt(base: Buffer, put: PutChange, spoolDir: string): Buffer {
  const content = "bytes" in put.content ? Buffer.from(put.content.bytes) : readFileSync(join(spoolDir, put.content.spool));
  if (!put.delta) return content;
  expect(sha(content)).toBe(put.delta.contentSha256);
  const pieces = deltaPieces(put.size, deltaRanges(put.size, put.delta));
  const out = Buffer.alloc(put.size);
  for (const piece of pieces) {
    if (piece.source === "base") {
      expect(piece.offset + piece.length).toBeLessThanOrEqual(base.length);
      base.copy(out, piece.offset, piece.offset, piece.offset + piece.length);
    } else content.copy(out, piece.offset, piece.from, piece.from + piece.length);
  }
  return out;
}

function blockHashesOf(bytes: Buffer): Buffer {
  const out: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += BLOCK_SIZE) out.push(createHash("sha256").update(bytes.subarray(at, at + BLOCK_SIZE)).digest());
  return Buffer.concat(out);
}

let h: Harness | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await h?.close();
  h = undefined;
});

it("rebuilds, from the base and the delta, exactly the bytes the put's SHA-256 and fingerprints were taken over, whatever the file does while read", async () => {
  const harness = agentHarness(SET);
  h = harness;
  const spec = { name: SET, root: harness.src.path, exclude: [] };
  const path = join(harness.src.path, NAME);
  const random = generator(Number(process.env.DELTA_PROPERTY_SEED ?? 20261201));
  // Not a whole number of chunks: the last chunk is short. Large enough for more ranges than a delta lists.
  const base = randomBytes(48 * MiB + 1234);
  writeFileSync(path, base);
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  const ino = statSync(path).ino;

  // Every read of the file may find it rewritten just before (the stat-after-read rule reads it again, up to 5 times).
  const probe = await open(join(harness.state.path, ".probe"), "w");
  const prototype = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<unknown> };
  await probe.close();
  const realRead = prototype.read;
  let rewriteChance = 0;
  let rewrites = 0;
  vi.spyOn(prototype, "read").mockImplementation(function (this: { fd: number }, ...args: unknown[]) {
    if (fstatSync(this.fd).ino === ino && random.next() < rewriteChance) {
      rewrites++;
      rewrite(random, path);
    }
    return realRead.apply(this, args);
  });

  const kinds = new Set<string>();
  // Four trials without rewrites (the last with few ranges), then four with each rewrite chance, growths and few
  // ranges among them: each rewrite trial re-reads 48 MiB up to five times, the most of this test's time.
  const trials = 8;
  for (let trial = 0; trial < trials; trial++) {
    writeFileSync(path, base);
    const many = trial % 4 !== 3;
    for (const chunk of changedChunks(random, Math.ceil(base.length / CHUNK_SIZE), many)) {
      const offset = chunk * CHUNK_SIZE;
      writeAt(path, offset + random.int(0, 100), random.bytes(Math.min(random.int(1, CHUNK_SIZE - 100), base.length - offset)));
    }
    // Half the trials also grow the file (an append inside the base's short last chunk and past it).
    if (trial % 2 === 1) writeAt(path, base.length + random.int(0, 20), random.bytes(random.int(1, 3 * CHUNK_SIZE)));
    rewriteChance = trial < 4 ? 0 : [0.02, 0.1, 0.3][trial % 3] ?? 0;
    const rewritesBefore = rewrites;
    const { changes } = await capture(harness.journal, spec, NAME);
    const put = changes.find((change): change is PutChange => change.op === "put");
    if (!put) throw new Error(`trial ${trial}: no put`);
    kinds.add(put.delta ? `delta of ${(put.delta.ranges?.length ?? 0) === MAX_DELTA_RANGES ? "joined" : "few"} ranges` : "whole");
    const file = rebuilt(base, put, harness.journal.spoolDir);
    const where = `trial ${trial} (${put.delta ? `delta, ${put.delta.ranges?.length} ranges` : "whole"}, ${rewrites - rewritesBefore} rewrites)`;
    expect(file.length, where).toBe(put.size);
    expect(sha(file), where).toBe(put.sha256);
    expect(put.chunkHashes && Buffer.from(put.chunkHashes).equals(chunkFingerprints(file)), where).toBe(true);
    if (put.blockHashes) expect(Buffer.from(put.blockHashes).equals(blockHashesOf(file)), where).toBe(true);
    if (rewrites === rewritesBefore) expect(sha(file), where).toBe(sha(readFileSync(path)));
    // Nothing left behind but the put's own content.
    expect(readdirSync(harness.journal.spoolDir), where).toEqual("spool" in put.content ? [put.content.spool] : []);
    if ("spool" in put.content) await rm(join(harness.journal.spoolDir, put.content.spool));
  }
  expect(rewrites).toBeGreaterThan(0);
  expect([...kinds].sort()).toContain("delta of joined ranges");
});
