// Stopping the agent while it starts: a whole-set scan gives way between
// chunks of a large folder and before each file it has not read yet, and a
// volume set's first read before each block, instead of reading on to the end.
// What was captured is journaled; the next scan does the rest.

import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { StartInterruptedError } from "../../agent/interrupt.ts";
import { Journal, type Change } from "../../agent/journal.ts";
import { barrierScan } from "../../agent/scan.ts";
import type { SetSpec } from "../../agent/set-spec.ts";
import { volumeScan } from "../../agent/volume.ts";
import { BLOCK_SIZE, MAX_INLINE_DECODED_BYTES } from "../../contract/wire.ts";
import { tempDir } from "../support/tree.ts";

const SET = "big";
const FILES = 1_200;
let src: ReturnType<typeof tempDir>;
let state: ReturnType<typeof tempDir>;
let journal: Journal;
let spec: SetSpec;

beforeEach(() => {
  src = tempDir("tidemark-src-");
  state = tempDir("tidemark-state-");
  journal = Journal.open(state.path);
  spec = { name: SET, root: src.path, exclude: [] };
});

afterEach(() => {
  journal.close();
  src.remove();
  state.remove();
});

const backlog = () => journal.sets.counters(SET).backlogRecords;

it("gives way between chunks of one large folder, journaling the chunk it captured", async () => {
  for (let i = 0; i < FILES; i++) writeFileSync(join(src.path, `f${String(i).padStart(4, "0")}`), `file ${i}`);
  const stop = new AbortController();
  // Aborted once the first chunk is read (renames sees each captured entry before it is queued).
  const renames = async (changes: Change[]) => {
    stop.abort();
    return changes;
  };
  await expect(barrierScan(journal, spec, { signal: stop.signal, renames })).rejects.toThrow(StartInterruptedError);
  expect(backlog()).toBeGreaterThan(0);
  expect(backlog()).toBeLessThan(FILES);

  // The next scan journals the rest: every file once.
  await barrierScan(journal, spec);
  expect(backlog()).toBe(FILES);
});

it("reads no large file held back once interrupted", async () => {
  for (let i = 0; i < 5; i++) writeFileSync(join(src.path, `f${i}`), `file ${i}`);
  // More than are read at once: the last ones start only after the stop.
  const LARGE = 20;
  for (let i = 0; i < LARGE; i++) writeFileSync(join(src.path, `large${i}.bin`), randomBytes(MAX_INLINE_DECODED_BYTES + 1));
  const stop = new AbortController();
  // The stop arrives as the first large file is captured.
  const entry = journal.index.entry.bind(journal.index);
  const spy = vi.spyOn(journal.index, "entry").mockImplementation((set, path) => {
    if (path.startsWith("large")) stop.abort();
    return entry(set, path);
  });
  try {
    await expect(barrierScan(journal, spec, { signal: stop.signal })).rejects.toThrow(StartInterruptedError);
  } finally {
    spy.mockRestore();
  }
  // The small files and the large ones already being read are journaled; the rest are not read.
  expect(backlog()).toBeGreaterThanOrEqual(5);
  expect(backlog()).toBeLessThan(5 + LARGE);
  await barrierScan(journal, spec);
  expect(backlog()).toBe(5 + LARGE);
});

it("a volume set's read gives way before its next block", async () => {
  const image = join(src.path, "disk.img");
  writeFileSync(image, randomBytes(8 * BLOCK_SIZE));
  const volume: SetSpec = { name: SET, root: image, exclude: [], volume: { scanMs: 60_000 } };
  const stop = new AbortController();
  stop.abort();
  await expect(volumeScan(journal, volume, { full: true, signal: stop.signal })).rejects.toThrow(StartInterruptedError);
  expect(backlog()).toBe(0);
  // Nothing was marked read: the next scan reads the whole image.
  expect((await volumeScan(journal, volume)).changes).toBe(8);
});
