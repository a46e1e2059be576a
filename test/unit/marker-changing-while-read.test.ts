// A file that keeps changing while a marker's barrier reads it is journaled
// as read: bytes that may be no state the file was ever in (a 100 MiB file
// rewritten at both ends while `task --wait` ran restored with its tail
// newer than its head, and the task said "succeeded"). The marker names such
// files, and `task` warns of them; the target records them with the snapshot,
// fails its task naming them (like entries a snapshot left out), and its
// restore names them as possibly torn. The change is made by hand: the file's
// mtime moves at each of its lstats, as a busy writer's would.

import { utimesSync, writeFileSync } from "node:fs";
import type * as FsPromises from "node:fs/promises";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { changingWhileReadJson, changingWhileReadWarning } from "../../agent/commands/task.ts";
import { restoreSnapshot } from "../../agent/restore.ts";
import { boundChangingWhileRead, MAX_CHANGING_WHILE_READ_BYTES, snapshotIdFor, TaskFieldsSchema } from "../../contract/tasks.ts";
import { parseMessage } from "../../contract/wire.ts";
import { listSnapshots, readSetStatus, readSnapshot, readTaskResult } from "../../lambdas/target/index.ts";
import { boundedBySource, onlySourceLimited } from "../../lambdas/tasks/snapshot-checks.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

/** Absolute paths whose mtime moves on at each lstat. */
const busy = new Set<string>();
let tick = 1_700_000_000;

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  const lstat = async (...args: Parameters<typeof actual.lstat>) => {
    const st = await actual.lstat(...args);
    const [file] = args;
    if (typeof file === "string" && busy.has(file)) {
      tick += 1;
      utimesSync(file, tick, tick);
    }
    return st;
  };
  return { ...actual, lstat };
});

const SET = "app";
let h: Harness | undefined;

afterEach(async () => {
  busy.clear();
  await h?.close();
  h = undefined;
});

it("names the files that kept changing while the barrier read them, and only those", async () => {
  const harness = agentHarness(SET);
  h = harness;
  writeFileSync(join(harness.src.path, "busy.db"), "pages");
  writeFileSync(join(harness.src.path, "quiet.txt"), "still");
  busy.add(join(harness.src.path, "busy.db"));
  const queued = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  expect(queued.changingWhileRead).toEqual(["busy.db"]);

  busy.clear();
  writeFileSync(join(harness.src.path, "busy.db"), "pages, settled");
  expect((await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) })).changingWhileRead).toBeUndefined();
});

it("warns naming the first ten files and counting the rest", () => {
  const paths = Array.from({ length: 12 }, (_, i) => `db/${i}.db`);
  expect(changingWhileReadWarning(paths)).toMatch(/^12 file\(s\) kept changing while the barrier read them: .*--quiesce.*: db\/0\.db, .*db\/9\.db and 2 more$/);
});

it("fails the snapshot's task naming them, records them in its summary, and restores them named as possibly torn", async () => {
  const harness = agentHarness(SET);
  h = harness;
  writeFileSync(join(harness.src.path, "busy.db"), "pages");
  writeFileSync(join(harness.src.path, "quiet.txt"), "still");
  busy.add(join(harness.src.path, "busy.db"));
  const torn = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  busy.clear();
  await harness.agent.drain(SET);
  const result = await readTaskResult(harness.store, SET, torn.id);
  expect(result).toMatchObject({ status: "failed", outputs: { changingWhileRead: 1 } });
  expect(result?.error).toMatch(/holds 1 file\(s\) that kept changing while the marker's barrier read them, possibly torn copies .*: busy\.db$/);
  // Kept, and restorable.
  const summary = await readSnapshot(harness.store, SET, snapshotIdFor(torn.id));
  expect(summary.changingWhileRead).toEqual({ paths: ["busy.db"], count: 1 });
  expect((await readSetStatus(harness.store, SET))?.lastSnapshot).toMatchObject({ id: summary.id, changingWhileRead: 1 });
  const to = tempDir("tidemark-torn-");
  try {
    const restored = await restoreSnapshot(harness.store, summary, to.path);
    expect(restored).toMatchObject({ files: 2, failures: [], possiblyTorn: { paths: ["busy.db"], count: 1 } });
  } finally {
    to.remove();
  }

  writeFileSync(join(harness.src.path, "busy.db"), "pages, settled");
  const settled = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  await harness.agent.drain(SET);
  expect((await readTaskResult(harness.store, SET, settled.id))?.status).toBe("succeeded");
  expect((await readSnapshot(harness.store, SET, snapshotIdFor(settled.id))).changingWhileRead).toBeUndefined();
});

it("prunes by retention behind a torn snapshot, which is whole: a busy set snapshotted without --quiesce still prunes", async () => {
  let now = Date.parse("2026-01-01T00:00:00Z");
  const harness = agentHarness(SET, {}, { tasks: { retentionDays: 1 }, history: { days: 0 }, now: () => now });
  h = harness;
  writeFileSync(join(harness.src.path, "busy.db"), "pages");
  const old = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  await harness.agent.drain(SET);
  expect((await readTaskResult(harness.store, SET, old.id))?.status).toBe("succeeded");
  now += 3 * 86_400_000;
  writeFileSync(join(harness.src.path, "busy.db"), "pages, written on");
  busy.add(join(harness.src.path, "busy.db"));
  const torn = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  busy.clear();
  await harness.agent.drain(SET);
  expect((await readTaskResult(harness.store, SET, torn.id))?.status).toBe("failed");
  expect((await listSnapshots(harness.store, SET)).map((s) => s.id)).toEqual([snapshotIdFor(torn.id)]);
});

it("counts a snapshot as only torn when nothing else is wrong with it", async () => {
  const harness = agentHarness(SET);
  h = harness;
  writeFileSync(join(harness.src.path, "busy.db"), "pages");
  busy.add(join(harness.src.path, "busy.db"));
  const torn = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  busy.clear();
  await harness.agent.drain(SET);
  const summary = await readSnapshot(harness.store, SET, snapshotIdFor(torn.id));
  expect(onlySourceLimited(summary)).toBe(true);
  expect(onlySourceLimited({ ...summary, changingWhileRead: undefined })).toBe(false);
  if (summary.digest) expect(onlySourceLimited({ ...summary, digest: { ...summary.digest, status: "mismatch" } })).toBe(false);
});

it("bounds what a source host sent as files changing while read, whatever it sent", () => {
  // A hostile agent: 150 names of 8 KiB each, and a count lower than the names it sent.
  const sent = { paths: Array.from({ length: 150 }, (_, i) => `${"x".repeat(8192)}${i}`), count: 3 };
  const kept = boundedBySource(sent);
  expect(kept?.count).toBe(150);
  expect(kept?.paths.length).toBeLessThanOrEqual(100);
  for (const path of kept?.paths ?? []) expect(path.length).toBeLessThanOrEqual(1024);
  expect(kept?.paths.join("").length).toBeLessThanOrEqual(MAX_CHANGING_WHILE_READ_BYTES);
  expect(boundedBySource(undefined)).toBeUndefined();
});

it("leaves out names a source host sent that are no set path (a terminal escape), still counting them, and stays torn when none is left", () => {
  const kept = boundedBySource({ paths: ["db/app.db", "\u001b[2Jclear", "bad\u0007bell"], count: 3 });
  expect(kept).toEqual({ paths: ["db/app.db"], count: 3 });
  expect(boundedBySource({ paths: ["\u001b[31mred"], count: 1 })).toEqual({ paths: [], count: 1 });
});

it("carries at most 100 names, and no more than its byte limit, with the count", () => {
  const many = Array.from({ length: 150 }, (_, i) => `db/${String(i).padStart(3, "0")}.db`);
  expect(boundChangingWhileRead(many)).toEqual({ paths: many.slice(0, 100), count: 150 });
  expect(changingWhileReadJson(many)).toEqual({ changingWhileRead: many.slice(0, 100), changingWhileReadCount: 150 });
  const long = Array.from({ length: 20 }, (_, i) => `${"d".repeat(4000)}/${i}`);
  const bounded = boundChangingWhileRead(long);
  expect(bounded?.count).toBe(20);
  expect(bounded?.paths.join("").length).toBeLessThanOrEqual(MAX_CHANGING_WHILE_READ_BYTES);
  expect(bounded?.paths).toEqual(long.slice(0, bounded?.paths.length));
  expect(boundChangingWhileRead([])).toBeUndefined();
});

it("parses a marker with the list, and one without it (an older agent's)", () => {
  const task = { seq: 7, at: 1, op: "task", id: "t1", action: "snapshot", timeoutSeconds: 300 };
  const body = (record: object) => JSON.stringify({ v: 1, set: SET, records: [record] });
  expect(parseMessage(body({ ...task, changingWhileRead: { paths: ["busy.db"], count: 2 } }))).toMatchObject({ records: [{ changingWhileRead: { paths: ["busy.db"], count: 2 } }] });
  expect(parseMessage(body(task))).toMatchObject({ records: [{ id: "t1" }] });
});
