// A delta's content spooled by a scan (chunk-delta.ts ContentSink) is either
// handed over as a spool file or removed: a finish that fails after the
// spool file was closed (its rename into place refused: a cleaner, a full or
// read-only disk) leaves no <name>.tmp behind, nor the file renamed, also for
// the content a join of too many ranges assembles (DeltaContent). Nothing
// sweeps the spool folder of files no record names.

import { randomBytes } from "node:crypto";
import { readdirSync } from "node:fs";
import type * as fsPromises from "node:fs/promises";
import { afterEach, expect, it, vi } from "vitest";
import { ContentSink, DeltaContent } from "../../agent/chunk-delta.ts";
import { CHUNK_SIZE, MAX_DELTA_RANGES, type ByteRange } from "../../contract/delta-ranges.ts";
import { tempDir } from "../support/tree.ts";

const refused = { on: false };
vi.mock("node:fs/promises", async (importOriginal) => {
  const real = await importOriginal<typeof fsPromises>();
  return {
    ...real,
    rename: async (...args: Parameters<typeof real.rename>) => {
      if (refused.on) throw Object.assign(new Error("EROFS: read-only file system, rename"), { code: "EROFS" });
      return real.rename(...args);
    },
  };
});

const dirs: { path: string; remove(): void }[] = [];
afterEach(() => {
  refused.on = false;
  for (const dir of dirs.splice(0)) dir.remove();
});

function spoolDir(): string {
  const dir = tempDir();
  dirs.push(dir);
  return dir.path;
}

it("removes a spooled content whose finish fails after the spool file was written", async () => {
  const dir = spoolDir();
  const sink = new ContentSink(dir, Number.POSITIVE_INFINITY);
  // Past MAX_INLINE_DECODED_BYTES: spooled.
  for (let i = 0; i < 3; i++) await sink.add(randomBytes(1024 * 1024));
  expect(readdirSync(dir)).toHaveLength(1);
  refused.on = true;
  await expect(sink.finish()).rejects.toThrow(/EROFS/);
  expect(readdirSync(dir)).toEqual([]);
});

it("removes every spool file of a join whose content cannot be put in place", async () => {
  const dir = spoolDir();
  // More ranges than a delta lists, a chunk each with two between: changed bytes and gaps both spooled.
  const ranges = Array.from({ length: MAX_DELTA_RANGES + 100 }, (_, i): ByteRange => [3 * i * CHUNK_SIZE, CHUNK_SIZE]);
  const size = 3 * ranges.length * CHUNK_SIZE;
  const file = randomBytes(size);
  const delta = new DeltaContent(dir, size, Number.POSITIVE_INFINITY);
  const window = 64 * CHUNK_SIZE;
  for (let position = 0; position < size; position += window) {
    const data = file.subarray(position, position + window);
    for (const [offset, length] of ranges) if (offset >= position && offset < position + window) await delta.add(data, position, offset, offset + length);
    delta.windowRead(data, position);
  }
  refused.on = true;
  await expect(delta.finish(ranges, size)).rejects.toThrow(/EROFS/);
  expect(readdirSync(dir)).toEqual([]);
});
