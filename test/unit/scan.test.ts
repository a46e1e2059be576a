import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { barrierScan } from "../../agent/scan.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";
let src: ReturnType<typeof tempDir>;
let state: ReturnType<typeof tempDir>;
let journal: Journal;

beforeEach(() => {
  src = tempDir("tidemark-src-");
  state = tempDir("tidemark-state-");
  journal = Journal.open(state.path);
});

afterEach(() => {
  journal.close();
  src.remove();
  state.remove();
});

/** The number of changes in each journal transaction of a scan. */
async function transactionsOf(scan: () => Promise<unknown>): Promise<number[]> {
  const original = journal.append.bind(journal);
  const sizes: number[] = [];
  // Counted at the call: the scan reuses its array once the changes are in.
  const append = vi.spyOn(journal, "append").mockImplementation((set, changes) => {
    sizes.push(changes.length);
    return original(set, changes);
  });
  try {
    await scan();
    return sizes;
  } finally {
    append.mockRestore();
  }
}

it("journals many small folders in a few transactions, not one per folder (each is an fsync on the agent's thread)", async () => {
  for (let d = 0; d < 40; d++) {
    mkdirSync(join(src.path, `d${d}`));
    for (let f = 0; f < 3; f++) writeFileSync(join(src.path, `d${d}`, `f${f}`), `${d}/${f}`);
  }
  const transactions = await transactionsOf(() => barrierScan(journal, { name: SET, root: src.path, exclude: [] }));
  // A scan without onChunkJournaled (a watcher's folder scan) journals in full chunks from the start: the 160 go in one.
  expect(transactions).toEqual([160]);
  expect(journal.sets.counters(SET).backlogRecords).toBe(160);
});

it("journals a scan's first changes in a small transaction and each next one twice as large, up to a chunk, so the sender starts while the rest is read", async () => {
  mkdirSync(join(src.path, "many"));
  for (let f = 0; f < 1_500; f++) writeFileSync(join(src.path, "many", `f${f}`), "x");
  const chunks: boolean[] = [];
  const transactions = await transactionsOf(() => barrierScan(journal, { name: SET, root: src.path, exclude: [] }, { onChunkJournaled: (early) => chunks.push(early) }));
  // The folder itself, then its files in captures of 64, 128, 256 and 500 at a time.
  expect(transactions).toEqual([65, 128, 256, 500, 500, 52]);
  // Told of each chunk, not of the last transaction (its caller wakes the sender once the scan ends).
  expect(chunks).toEqual([true, true, true, false, false]);
  expect(journal.sets.counters(SET).backlogRecords).toBe(1_501);
  // Without it, a scan's transactions are full chunks from the start: the folder and 500 files, 500, 500.
  writeFileSync(join(src.path, "many", "f0"), "changed");
  for (let f = 1; f < 1_500; f++) writeFileSync(join(src.path, "many", `f${f}`), "yy");
  expect(await transactionsOf(() => barrierScan(journal, { name: SET, root: src.path, exclude: [] }))).toEqual([500, 500, 500]);
});

it("still bounds a transaction: by changes, and by bytes of content", async () => {
  mkdirSync(join(src.path, "many"));
  for (let f = 0; f < 1_100; f++) writeFileSync(join(src.path, "many", `f${f}`), "x");
  const byCount = await transactionsOf(() => barrierScan(journal, { name: SET, root: src.path, exclude: [] }));
  // A chunk is 500 changes (this scan, without onChunkJournaled, starts there), and a folder's captures go in 500 at a time on top of what was waiting.
  expect(byCount.length).toBeGreaterThanOrEqual(2);
  expect(byCount.every((n) => n < 1_000)).toBe(true);
  expect(byCount.reduce((a, b) => a + b, 0)).toBe(1_101);

  // 12 MiB in twelve folders: a transaction closes once 8 MiB of content wait.
  for (let d = 0; d < 12; d++) {
    mkdirSync(join(src.path, `big${d}`));
    writeFileSync(join(src.path, `big${d}`, "f"), Buffer.alloc(1024 * 1024, d));
  }
  const byBytes = await transactionsOf(() => barrierScan(journal, { name: SET, root: src.path, exclude: [] }));
  expect(byBytes).toHaveLength(2);
  expect(byBytes.reduce((a, b) => a + b, 0)).toBe(24);
});

it("tells shouldStop what it holds that is not journaled yet, and journals it when it stops", async () => {
  for (let d = 0; d < 5; d++) {
    mkdirSync(join(src.path, `d${d}`));
    writeFileSync(join(src.path, `d${d}`, "f"), Buffer.alloc(1000));
  }
  const seen: number[] = [];
  const report = await barrierScan(journal, {
    name: SET,
    root: src.path,
    exclude: [],
  }, {
    shouldStop: (unjournaled) => {
      seen.push(unjournaled);
      return journal.sets.counters(SET).backlogBytes + unjournaled >= 2000;
    },
  });
  expect(report.stopped).toBe(true);
  expect(seen.some((bytes) => bytes > 0)).toBe(true);
  // What was captured before the stop is journaled, and reported.
  expect(journal.sets.counters(SET).backlogRecords).toBe(report.changes);
  expect(journal.sets.counters(SET).backlogBytes).toBeGreaterThanOrEqual(2000);
});

it("journals files too large to travel inline after the rest of the tree, so that small files do not wait behind them", async () => {
  mkdirSync(join(src.path, "a"));
  writeFileSync(join(src.path, "a", "f.txt"), "small");
  writeFileSync(join(src.path, "big.bin"), Buffer.alloc(1024 * 1024 + 1, 1));
  writeFileSync(join(src.path, "c.txt"), "small too");
  mkdirSync(join(src.path, "d"));
  writeFileSync(join(src.path, "d", "g.txt"), "small");
  await barrierScan(journal, { name: SET, root: src.path, exclude: [] });
  const journaled = journal.pending(SET, 0, 100).map((record) => ("path" in record ? record.path : record.op));
  expect(journaled).toEqual(["a", "c.txt", "d", "a/f.txt", "d/g.txt", "big.bin"]);
  // Held back, not left out: a second scan finds nothing to do.
  expect((await barrierScan(journal, { name: SET, root: src.path, exclude: [] })).changes).toBe(0);
});

it("journals the small files before it reads the large ones held back, so they are sent while a large file is read", async () => {
  writeFileSync(join(src.path, "small-1.txt"), "one");
  writeFileSync(join(src.path, "small-2.txt"), "two");
  writeFileSync(join(src.path, "huge.img"), Buffer.alloc(1024 * 1024 + 1, 1));
  const journaledWhenRead: number[] = [];
  await barrierScan(journal, { name: SET, root: src.path, exclude: [] }, {
    beforeRead: (size) => {
      if (size > 1024 * 1024) journaledWhenRead.push(journal.sets.counters(SET).backlogRecords);
    },
  });
  // Both small files were in the journal (and so could be sent) while the large file was read.
  expect(journaledWhenRead).toEqual([2]);
  expect(journal.sets.counters(SET).backlogRecords).toBe(3);
});
