// A delta's content gathered in the one read of a file (chunk-delta.ts
// DeltaContent): the changed bytes, and the unchanged bytes between them that
// a join of too many ranges needs, taken from the windows as the scan hands
// them over (one buffer, reused), never read again.

import { randomBytes } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DeltaContent } from "../../agent/chunk-delta.ts";
import { MAX_DELTA_RANGES, capRanges, type ByteRange } from "../../contract/delta-ranges.ts";
import { tempDir } from "../support/tree.ts";

const dirs: { path: string; remove(): void }[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) dir.remove();
});

function spoolDir(): string {
  const dir = tempDir();
  dirs.push(dir);
  return dir.path;
}

/** Deterministic lengths in [min, max]. */
function lengths(seed: number): (min: number, max: number) => number {
  let state = seed;
  return (min, max) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return min + (state % (max - min + 1));
  };
}

/** Changed pieces of a file of `count` pieces, each inside one window of `window` bytes, with gaps of at least one byte. */
function piecesOf(count: number, window: number, piece: [number, number], gap: [number, number], seed = 1): { size: number; ranges: ByteRange[] } {
  const next = lengths(seed);
  const ranges: ByteRange[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    let from = at + (i === 0 ? 0 : next(gap[0], gap[1]));
    const length = Math.min(next(piece[0], piece[1]), window);
    // A piece never crosses a window's end (the scan finds changes within the window it holds).
    if (Math.floor(from / window) !== Math.floor((from + length - 1) / window)) from = (Math.floor(from / window) + 1) * window;
    ranges.push([from, length]);
    at = from + length;
  }
  return { size: at + next(gap[0], gap[1]), ranges };
}

/** Hands the file to delta as a scan does: window by window, through one reused buffer. */
async function feed(delta: DeltaContent, file: Buffer, window: number, ranges: readonly ByteRange[]): Promise<void> {
  const buffer = Buffer.alloc(window);
  let r = 0;
  for (let position = 0; position < file.length; position += window) {
    const read = file.copy(buffer, 0, position, Math.min(file.length, position + window));
    const data = buffer.subarray(0, read);
    for (; r < ranges.length && (ranges[r]?.[0] ?? 0) < position + read; r++) {
      const [offset = 0, length = 0] = ranges[r] ?? [];
      await delta.add(data, position, offset, offset + length);
    }
    delta.windowRead(data, position);
  }
}

const bytesOf = (file: Buffer, ranges: readonly ByteRange[]) => Buffer.concat(ranges.map(([offset, length]) => file.subarray(offset, offset + length)));

async function contentOf(dir: string, content: { bytes: Uint8Array } | { spool: string }): Promise<Buffer> {
  return "bytes" in content ? Buffer.from(content.bytes) : readFileSync(join(dir, content.spool));
}

describe("a delta's content from one read", () => {
  it("joins more ranges than a delta lists with the gaps' bytes of the same read, also gaps spanning windows (spooled)", async () => {
    const dir = spoolDir();
    const window = 1000;
    // Past 1 MiB of changed bytes and of gaps: both are spooled and read back for the join.
    const { size, ranges } = piecesOf(MAX_DELTA_RANGES + 500, window, [100, 600], [1, 2500]);
    const file = randomBytes(size);
    const delta = new DeltaContent(dir, size, Number.POSITIVE_INFINITY);
    await feed(delta, file, window, ranges);
    const found = await delta.finish(ranges, size);
    if (typeof found === "string") throw new Error(`expected a delta, got ${found}`);
    const joined = capRanges(ranges, MAX_DELTA_RANGES);
    expect(found.ranges).toEqual(joined);
    expect("spool" in found.read.content).toBe(true);
    expect((await contentOf(dir, found.read.content)).equals(bytesOf(file, joined))).toBe(true);
    // Only the delta's content is left in the spool folder.
    expect(readdirSync(dir)).toEqual(["spool" in found.read.content ? found.read.content.spool : ""]);
  });

  it("keeps the changed bytes alone when they are few enough to list", async () => {
    const dir = spoolDir();
    const { size, ranges } = piecesOf(300, 64, [1, 30], [1, 200], 7);
    const file = randomBytes(size);
    const delta = new DeltaContent(dir, size, Number.POSITIVE_INFINITY);
    await feed(delta, file, 64, ranges);
    const found = await delta.finish(ranges, size);
    if (typeof found === "string") throw new Error(`expected a delta, got ${found}`);
    expect(found.ranges).toEqual(ranges);
    expect((await contentOf(dir, found.read.content)).equals(bytesOf(file, ranges))).toBe(true);
    expect(readdirSync(dir)).toEqual([]);
  });

  it("says when a gap the join needs was longer than it keeps (the file larger than its size said), and when the join covers more than half the file", async () => {
    const dir = spoolDir();
    // Told a small size, it keeps gaps of up to 4 KiB: these are 5,000 bytes.
    const { size, ranges } = piecesOf(MAX_DELTA_RANGES + 10, 64 * 1024, [1, 1], [5000, 5000]);
    const delta = new DeltaContent(dir, 1024, Number.POSITIVE_INFINITY);
    await feed(delta, randomBytes(size), 64 * 1024, ranges);
    expect(await delta.finish(ranges, size)).toBe("unkept");

    const dense = piecesOf(MAX_DELTA_RANGES + 100, 64, [10, 10], [5, 12], 3);
    const whole = new DeltaContent(dir, dense.size, Number.POSITIVE_INFINITY);
    await feed(whole, randomBytes(dense.size), 64, dense.ranges);
    expect(await whole.finish(dense.ranges, dense.size)).toBe("whole");
    expect(readdirSync(dir)).toEqual([]);
  });

  it("told to keep no gaps, spools none and says a join is unkept (the caller reads the joined ranges again)", async () => {
    const dir = spoolDir();
    const { size, ranges } = piecesOf(MAX_DELTA_RANGES + 500, 1000, [100, 600], [1, 2500]);
    const file = randomBytes(size);
    const kept = new DeltaContent(dir, size, Number.POSITIVE_INFINITY);
    await feed(kept, file, 1000, ranges);
    expect(kept.keptGapBytes).toBeGreaterThan(0);
    await kept.discard();
    const delta = new DeltaContent(dir, size, Number.POSITIVE_INFINITY, false);
    await feed(delta, file, 1000, ranges);
    expect(delta.keptGapBytes).toBe(0);
    expect(await delta.finish(ranges, size)).toBe("unkept");
    expect(readdirSync(dir)).toEqual([]);
  });
});
