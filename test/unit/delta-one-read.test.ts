// A large file's delta comes out of one read (issue 17): more changed ranges
// than a delta lists are joined across their smallest gaps with bytes of the
// same read, never read again. A database file rewritten by checkpoints while
// it is read then travels as a delta of what was read (its SHA-256 taken over
// exactly those bytes), never whole because a second read raced a write.

import { createHash, randomBytes } from "node:crypto";
import { closeSync, fstatSync, openSync, readFileSync, readdirSync, statSync, writeFileSync, writeSync } from "node:fs";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DeltaContent } from "../../agent/chunk-delta.ts";
import { CHUNK_SIZE, MAX_DELTA_RANGES, capRanges, rangesBytes, type ByteRange } from "../../contract/delta-ranges.ts";
import { isMarkerMessage, parseMessage } from "../../contract/wire.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "db";
const NAME = "app.db";
const MiB = 1024 * 1024;

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/**
 * Pages a checkpoint rewrites: more than a delta lists, every third chunk, the first hundred every other chunk (so the
 * smallest gaps, which a join takes first, are those 4 KiB ones).
 */
const PAGES = Array.from({ length: MAX_DELTA_RANGES + 300 }, (_, i) => (i < 100 ? 2 * i : 200 + 3 * (i - 100)) * CHUNK_SIZE);
const SIZE = (PAGES.at(-1) ?? 0) + 8 * CHUNK_SIZE;

function writePages(path: string, pages: readonly number[]): void {
  const fd = openSync(path, "r+");
  try {
    for (const offset of pages) writeSync(fd, randomBytes(CHUNK_SIZE), 0, CHUNK_SIZE, offset);
  } finally {
    closeSync(fd);
  }
}

/** The FileHandle prototype, to see every read the agent makes of the database file. */
async function fileHandlePrototype(dir: string): Promise<{ read: (...args: unknown[]) => Promise<{ bytesRead: number }> }> {
  const probe = await open(join(dir, ".probe"), "w");
  const prototype = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<{ bytesRead: number }> };
  await probe.close();
  return prototype;
}

interface Reads {
  /** Handles that read the database file: one per pass over it. */
  readonly handles: Set<unknown>;
}

/**
 * Watches reads of the file at path; `during(handleNumber, position)` runs before each read of it (1 for the first
 * handle that read it) and may change the file.
 */
async function watchReads(dir: string, path: string, during: (handle: number, position: number) => void): Promise<Reads> {
  const prototype = await fileHandlePrototype(dir);
  const realRead = prototype.read;
  const ino = statSync(path).ino;
  const handles = new Set<unknown>();
  vi.spyOn(prototype, "read").mockImplementation(function (this: { fd: number }, ...args: unknown[]) {
    // Not the one-byte read past the end that tells a stale stat (capture.ts bytesPast): that is no pass.
    if (fstatSync(this.fd).ino === ino && args[2] !== 1) {
      handles.add(this);
      const position = typeof args[3] === "number" ? args[3] : -1;
      during([...handles].indexOf(this) + 1, position);
    }
    return realRead.apply(this, args);
  });
  return { handles };
}

describe("a large file's delta, read once", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    await h?.close();
    h = undefined;
  });

  let clock = 0;
  const start = async () => {
    const harness = agentHarness(SET, { targetStatus: (set) => readSetStatus(harness.store, set), busyFiles: { now: () => clock } });
    h = harness;
    writeFileSync(join(harness.src.path, NAME), randomBytes(SIZE));
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
    const puts = harness.transport.bodies
      .slice(bodies)
      .flatMap((body) => {
        const message = parseMessage(body);
        return isMarkerMessage(message) ? [] : message.records;
      })
      .flatMap((record) => (record.op === "put" ? [record] : []));
    return { bytes: harness.sent() - before, puts };
  };

  /** Gap bytes each delta of the file kept for a join, and the passes over the file, at each step. */
  const watchGaps = () => {
    const kept: number[] = [];
    const realFinish = DeltaContent.prototype.finish;
    vi.spyOn(DeltaContent.prototype, "finish").mockImplementation(function (this: DeltaContent, ...args) {
      kept.push(this.keptGapBytes);
      return realFinish.apply(this, args);
    });
    return kept;
  };

  it("keeps no gap bytes for a delta that lists its ranges, nor for a file's first joined delta (read again); the next joined delta keeps them and reads once", async () => {
    const harness = await start();
    const path = join(harness.src.path, NAME);
    const kept = watchGaps();
    // Fewer ranges than a delta lists, with 8 KiB gaps (within the gap limit): none of their bytes is spooled.
    const few = await step(harness, () => writePages(path, PAGES.slice(0, 2000)));
    expect(few.puts.map((put) => put.delta?.ranges?.length)).toEqual([2000]);
    expect(kept).toEqual([0]);
    // The first delta that needs a join: no gaps kept, its joined ranges read again.
    let reads = await watchReads(harness.state.path, path, () => undefined);
    const first = await step(harness, () => writePages(path, PAGES));
    expect(first.puts.map((put) => put.delta?.ranges?.length)).toEqual([MAX_DELTA_RANGES]);
    expect(kept).toEqual([0, 0]);
    expect(reads.handles.size).toBe(2);
    // Its last delta joined: the next keeps the gaps and reads the file once.
    vi.restoreAllMocks();
    const later = watchGaps();
    reads = await watchReads(harness.state.path, path, () => undefined);
    const second = await step(harness, () => writePages(path, PAGES));
    expect(second.puts.map((put) => put.delta?.ranges?.length)).toEqual([MAX_DELTA_RANGES]);
    expect(later[0]).toBeGreaterThan(0);
    expect(reads.handles.size).toBe(1);
    const object = await harness.store.get(`data/${SET}/${NAME}`);
    expect(object && sha(object.body)).toBe(sha(readFileSync(path)));
    // A delta that lists its ranges again: the file's next one keeps no gaps.
    await step(harness, () => writePages(path, PAGES.slice(0, 10)));
    await step(harness, () => writePages(path, PAGES.slice(0, 10)));
    expect(later.slice(1)).toEqual([expect.any(Number), 0]);
    expect(readdirSync(harness.journal.spoolDir)).toEqual([]);
  });

  it("joins more ranges than a delta lists with bytes of the same read: one pass over the file, the joined ranges sent", async () => {
    const harness = await start();
    const path = join(harness.src.path, NAME);
    // Gaps are kept for a file whose last delta joined.
    await step(harness, () => writePages(path, PAGES));
    // A checkpoint that lands right after the file was read once: a second read of the joined ranges would find it.
    const reads = await watchReads(harness.state.path, path, (handle, position) => {
      if (handle === 2 && position === 0) writePages(path, PAGES.slice(0, 50));
    });
    const { bytes, puts } = await step(harness, () => writePages(path, PAGES));
    const fine = PAGES.map((offset): ByteRange => [offset, CHUNK_SIZE]);
    const joined = capRanges(fine, MAX_DELTA_RANGES);
    expect(joined).toHaveLength(MAX_DELTA_RANGES);
    expect(puts).toHaveLength(1);
    expect(puts[0]?.delta?.ranges).toEqual(joined);
    expect(reads.handles.size).toBe(1);
    // The joined ranges' bytes (the 300 smallest gaps: 100 of 4 KiB, 200 of 8 KiB), and the message around them.
    expect(rangesBytes(joined)).toBe(PAGES.length * CHUNK_SIZE + 100 * CHUNK_SIZE + 200 * 2 * CHUNK_SIZE);
    expect(bytes).toBeLessThan(rangesBytes(joined) * 1.4 + 64 * 1024);
    expect((await readSetStatus(harness.store, SET)).state).toBe("in-sync");
    const object = await harness.store.get(`data/${SET}/${NAME}`);
    expect(object && sha(object.body)).toBe(sha(readFileSync(path)));
    expect(readdirSync(harness.journal.spoolDir)).toEqual([]);
  });

  it("a file rewritten in scattered places while it is read travels as a delta of exactly what was read, never whole", async () => {
    const harness = await start();
    const path = join(harness.src.path, NAME);
    // Gaps are kept for a file whose last delta joined.
    await step(harness, () => writePages(path, PAGES));
    // During every pass, after its first window: pages behind the read and ahead of it are rewritten.
    let rewrites = 0;
    await watchReads(harness.state.path, path, (_handle, position) => {
      if (position > 0 && position <= 4 * MiB && rewrites < 12) {
        rewrites++;
        writePages(path, [...PAGES.slice(0, 40), ...PAGES.slice(-40)]);
      }
    });
    const first = await step(harness, () => writePages(path, PAGES));
    expect(rewrites).toBeGreaterThan(0);
    expect(first.puts.length).toBeGreaterThan(0);
    expect(first.puts.map((put) => (put.delta ? "delta" : "whole"))).not.toContain("whole");
    for (const put of first.puts) expect(put.delta?.ranges?.length).toBeLessThanOrEqual(MAX_DELTA_RANGES);
    expect(first.bytes).toBeLessThan(SIZE / 2);
    // The applier rebuilt each version from base and delta and found the SHA-256 the agent claimed: never out of sync.
    const status = await readSetStatus(harness.store, SET);
    expect(status.state).toBe("in-sync");
    const object = await harness.store.get(`data/${SET}/${NAME}`);
    expect(object && sha(object.body)).toBe(first.puts.at(-1)?.sha256);

    // Once the writes stop, the next capture brings the target to the file as it is.
    vi.restoreAllMocks();
    const settled = await step(harness, () => writePages(path, PAGES.slice(0, 1)));
    expect(settled.puts.every((put) => put.delta !== undefined)).toBe(true);
    const final = await harness.store.get(`data/${SET}/${NAME}`);
    expect(final && sha(final.body)).toBe(sha(readFileSync(path)));
    expect(readdirSync(harness.journal.spoolDir)).toEqual([]);
  });
});
