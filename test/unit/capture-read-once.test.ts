// A database's write-ahead log under steady writes (a few MiB, written many
// times a second) changes during every read: each capture of the watcher's
// hints read it up to 5 times for a stable copy it never held still for,
// holding the set's lane all that while (up to 43 s per capture on a loaded
// host), with every other capture of the set, small edits included, queued
// behind it. A file that kept changing at its previous capture is read once
// (readOnce); a large one keeps its second read, or a delta that raced a
// write would travel whole.

import { truncateSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { capture } from "../../agent/capture.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "db";
/** Past the size from which a file changing while read is read at most twice (capture.ts LARGE_READ_BYTES). */
const LARGE_BYTES = 64 * 1024 * 1024 + 1;
let h: Harness;

afterEach(async () => {
  await h.close();
  vi.restoreAllMocks();
});

/** Captures path while every read of it races a write (a new mtime each time); returns the sizes told before each read. */
async function captureWhileWritten(path: string, readOnce: boolean, grow: (size: number) => number) {
  const abs = join(h.src.path, path);
  const told: number[] = [];
  const changing: string[] = [];
  const result = await capture(h.journal, { name: SET, root: h.src.path, exclude: [] }, path, {
    beforeRead: (size) => {
      told.push(size);
      truncateSync(abs, grow(size));
      utimesSync(abs, new Date(), new Date(Date.now() + told.length * 1000));
    },
    onChangingWhileRead: (changed) => changing.push(changed),
    readOnce,
  });
  return { told, changing, result };
}

it("reads a file that keeps changing up to 5 times without readOnce, once with it, and journals it as changing while read", async () => {
  h = agentHarness(SET);
  writeFileSync(join(h.src.path, "app.db-wal"), Buffer.alloc(4096, 1));
  const grow = (size: number) => size + 4096;
  const stable = await captureWhileWritten("app.db-wal", false, grow);
  expect(stable.told).toHaveLength(5);
  writeFileSync(join(h.src.path, "app.db-wal"), Buffer.alloc(4096, 2));
  const once = await captureWhileWritten("app.db-wal", true, grow);
  expect(once.told).toEqual([4096]);
  expect(once.changing).toEqual(["app.db-wal"]);
  // What the one read found, stamped with the mtime from before it: the next capture reads the file again.
  expect(once.result.changes).toMatchObject([{ op: "put", path: "app.db-wal", size: 8192 }]);
});

it("keeps a large file's second read with readOnce", async () => {
  h = agentHarness(SET);
  writeFileSync(join(h.src.path, "app.db"), "x");
  truncateSync(join(h.src.path, "app.db"), LARGE_BYTES);
  const { told, changing } = await captureWhileWritten("app.db", true, (size) => size + 4096);
  expect(told).toEqual([LARGE_BYTES, LARGE_BYTES + 4096]);
  expect(changing).toEqual(["app.db"]);
});

it("reads a hinted file once after a capture found it changing while read, and again as stable once it held still", async () => {
  h = agentHarness(SET);
  const harness = h;
  const abs = join(harness.src.path, "app.db-wal");
  writeFileSync(abs, Buffer.alloc(64 * 1024, 1));
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  // Each read of the file's delta looks up its fingerprints first: a write lands then, between the capture's stats.
  let writing = true;
  let reads = 0;
  const fingerprints = harness.journal.index.chunkFingerprints.bind(harness.journal.index);
  vi.spyOn(harness.journal.index, "chunkFingerprints").mockImplementation((set, path, sha256) => {
    reads += 1;
    if (writing) {
      truncateSync(abs, 64 * 1024 + reads * 4096);
      utimesSync(abs, new Date(), new Date(Date.now() + reads * 1000));
    }
    return fingerprints(set, path, sha256);
  });
  const capturedReads = async () => {
    reads = 0;
    utimesSync(abs, new Date(), new Date(Date.now() - 60_000));
    harness.agent.hint(SET, "app.db-wal");
    await harness.agent.processHints(SET);
    return reads;
  };
  expect(await capturedReads()).toBe(5);
  expect(await capturedReads()).toBe(1);
  writing = false;
  expect(await capturedReads()).toBe(1);
  writing = true;
  expect(await capturedReads()).toBe(5);
});
