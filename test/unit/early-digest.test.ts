// A marker's digest read beside its barrier scan (agent/early-digest.ts): kept
// only when nothing wrote the set's index from the read's start to its answer,
// else read again after the scan; either way the digest of the index as the
// barrier left it.

import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import type { TaskFields } from "../../contract/tasks.ts";
import { startMarkerDigest } from "../../agent/early-digest.ts";
import { Journal } from "../../agent/journal.ts";
import { INVALIDATED_MTIME_NS } from "../../agent/journal-index.ts";
import { fileSetMarkerDigest } from "../../agent/marker-digest.ts";
import { barrierScan } from "../../agent/scan.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";
const SNAPSHOT: TaskFields = { action: "snapshot", timeoutSeconds: 60 };
let src: ReturnType<typeof tempDir>;
let state: ReturnType<typeof tempDir>;
let journal: Journal;

beforeEach(async () => {
  src = tempDir("tidemark-src-");
  state = tempDir("tidemark-state-");
  journal = Journal.open(state.path);
  mkdirSync(join(src.path, "a"));
  for (let i = 0; i < 50; i++) writeFileSync(join(src.path, "a", `f${i}`), `file ${i}\n`);
  writeFileSync(join(src.path, "top.txt"), "top\n");
  await barrierScan(journal, spec());
});

afterEach(() => {
  journal.close();
  src.remove();
  state.remove();
});

function spec() {
  return { name: SET, root: src.path, exclude: [] };
}

/** The digest as read after the barrier on the journal's own connection (what a marker carried before). */
async function readAfter() {
  const fields = await fileSetMarkerDigest(journal, SET);
  return fields.digest;
}

it("keeps the digest read beside a barrier that journaled nothing: the index's own read is not needed", async () => {
  const read = startMarkerDigest(journal, spec(), SNAPSHOT);
  const allEntries = vi.spyOn(journal.index, "allEntries");
  const report = await barrierScan(journal, spec());
  expect(report.changes).toBe(0);
  const fields = await read.finish();
  expect(allEntries).not.toHaveBeenCalled();
  allEntries.mockRestore();
  expect(fields.digest).toEqual(await readAfter());
  expect(fields.digest?.entries).toBe(52);
  expect(fields.content && "bytes" in fields.content && Buffer.isBuffer(fields.content.bytes)).toBe(true);
});

it("reads again after a barrier that journaled changes: the digest has them", async () => {
  const read = startMarkerDigest(journal, spec(), SNAPSHOT);
  writeFileSync(join(src.path, "a", "new"), "new\n");
  writeFileSync(join(src.path, "top.txt"), "changed, longer\n");
  const report = await barrierScan(journal, spec());
  expect(report.changes).toBeGreaterThan(0);
  const allEntries = vi.spyOn(journal.index, "allEntries");
  const fields = await read.finish();
  expect(allEntries).toHaveBeenCalledTimes(1);
  allEntries.mockRestore();
  expect(fields.digest).toEqual(await readAfter());
  expect(fields.digest?.entries).toBe(53);
});

it("reads again when anything else wrote the set's index meanwhile", async () => {
  const read = startMarkerDigest(journal, spec(), SNAPSHOT);
  // Not a barrier's append: what a refused record does to its entry (poison.ts), beside the scan.
  journal.index.invalidate(SET, "top.txt");
  const allEntries = vi.spyOn(journal.index, "allEntries");
  const fields = await read.finish();
  expect(allEntries).toHaveBeenCalledTimes(1);
  allEntries.mockRestore();
  expect(fields.digest).toEqual(await readAfter());
  const line = journal.index.entry(SET, "top.txt");
  expect(line?.mtimeNs).toBe(INVALIDATED_MTIME_NS);
});

it("reads nothing early for a marker without a digest, and discard leaves the spool as it was", async () => {
  expect(await startMarkerDigest(journal, spec(), { action: "event", timeoutSeconds: 0 }).finish()).toEqual({});
  const before = readdirSync(journal.spoolDir);
  await startMarkerDigest(journal, spec(), SNAPSHOT).discard();
  expect(readdirSync(journal.spoolDir)).toEqual(before);
});
