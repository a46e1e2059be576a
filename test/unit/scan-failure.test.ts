// A scan that throws (an I/O error mid-tree, a journal write refused) used to
// leave its row behind: status said "catching up (scanning)" for as long as
// the agent ran, and never named the failure. It is named now, with what
// failed, when and the error, and the set is not in sync until a later scan
// succeeds.

import { spawnSync } from "node:child_process";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { scanFailureNow, scanNow } from "../../agent/held-files.ts";
import { StartInterruptedError } from "../../agent/interrupt.ts";
import { caughtUp, findProblems, type SetFacts } from "../../agent/set-health.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { eventually } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "docs";
let h: Harness | undefined;
afterEach(() => h?.close());

async function facts(harness: Harness): Promise<SetFacts> {
  return {
    set: SET,
    counters: harness.journal.sets.counters(SET),
    generation: harness.journal.sets.knownGeneration(SET),
    target: { status: await readSetStatus(harness.store, SET) },
    now: new Date(),
    scanning: scanNow(harness.journal.held, SET),
    scanFailed: scanFailureNow(harness.journal.held, SET),
  };
}

/** Makes the next journal append throw, as a write error in the middle of a scan would. */
function failNextAppend(harness: Harness): void {
  vi.spyOn(harness.journal, "append").mockImplementationOnce(() => {
    throw new Error("disk I/O error");
  });
}

it("names a whole-set scan that failed, with when and its error, until a later scan succeeds", async () => {
  const harness = agentHarness(SET);
  h = harness;
  for (let i = 0; i < 5; i++) writeFileSync(join(harness.src.path, `f${i}.txt`), `file ${i}`);
  failNextAppend(harness);
  await expect(harness.agent.scan(SET)).rejects.toThrow("disk I/O error");

  // Not "scanning" with a live pid, but failed, with the error.
  expect(scanNow(harness.journal.held, SET)).toBeNull();
  const failed = scanFailureNow(harness.journal.held, SET);
  expect(failed).toMatchObject({ folder: "", error: "Error: disk I/O error", agentRunning: true });
  expect(Date.parse(failed?.failedAt ?? "")).toBeGreaterThanOrEqual(Date.parse(failed?.since ?? ""));
  await harness.agent.drain(SET);
  const afterFailure = await facts(harness);
  const problems = findProblems(afterFailure);
  expect(problems.map((p) => p.kind)).toEqual(["scan-failed"]);
  expect(problems[0]?.message).toContain(`the scan of the whole set that began at ${failed?.since} failed at ${failed?.failedAt}: Error: disk I/O error`);
  expect(problems[0]?.message).toContain("the agent scans the whole set again soon (within seconds after a failed capture or background scan");
  expect(caughtUp(afterFailure)).toBe(false);

  // The next scan succeeds: the failure is no longer named, and once the target applied it all the set is in sync.
  await harness.agent.scan(SET);
  expect(scanFailureNow(harness.journal.held, SET)).toBeNull();
  await harness.agent.drain(SET);
  const recovered = await facts(harness);
  expect(findProblems(recovered)).toEqual([]);
  expect(caughtUp(recovered)).toBe(true);
});

it("names a failed scan of a folder moved in; only a scan covering it clears it", async () => {
  const harness = agentHarness(SET);
  h = harness;
  await harness.agent.start();
  await harness.agent.drain(SET);
  const outside = join(harness.src.path, "..", `moved-in-${process.pid}`);
  mkdirSync(outside, { recursive: true });
  for (let i = 0; i < 5; i++) writeFileSync(join(outside, `f${i}.js`), `module.exports = ${i};`);
  renameSync(outside, join(harness.src.path, "vendor"));
  // The folder's own entry is journaled first; its scan's first append fails.
  const append = harness.journal.append.bind(harness.journal);
  let appends = 0;
  const spy = vi.spyOn(harness.journal, "append").mockImplementation((set, changes) => {
    appends += 1;
    if (appends === 2) throw new Error("disk I/O error");
    return append(set, changes);
  });
  try {
    harness.agent.hint(SET, "vendor");
    await expect(harness.agent.processHints(SET)).rejects.toThrow("disk I/O error");
  } finally {
    spy.mockRestore();
  }
  expect(scanNow(harness.journal.held, SET)).toBeNull();
  expect(scanFailureNow(harness.journal.held, SET)).toMatchObject({ folder: "vendor", error: "Error: disk I/O error" });
  expect(findProblems(await facts(harness)).map((p) => p.message)).toEqual([expect.stringContaining("the scan of folder vendor (new in the set) that began at")]);

  await harness.agent.scan(SET);
  expect(scanFailureNow(harness.journal.held, SET)).toBeNull();
});

it("says when the agent that ran a failed scan is not running", () => {
  const harness = agentHarness(SET);
  h = harness;
  const gone = spawnSync(process.execPath, ["-e", ""]).pid;
  harness.journal.held.scanFailed(SET, { folder: "", since: "2026-11-30T01:00:00.000Z", failedAt: "2026-11-30T01:05:00.000Z", error: "Error: EIO", pid: gone, host: hostname() });
  const failed = scanFailureNow(harness.journal.held, SET);
  expect(failed?.agentRunning).toBe(false);
  const [problem] = findProblems({ set: SET, counters: harness.journal.sets.counters(SET), generation: undefined, target: { error: "x" }, now: new Date(), scanFailed: failed }).filter((p) => p.kind === "scan-failed");
  expect(problem?.message).toContain("the agent that ran it is not running: its next start scans the set again");
});

it("a start scan interrupted by a stop is named as unfinished, not as failed, and keeps what it captured", async () => {
  const harness = agentHarness(SET);
  h = harness;
  mkdirSync(join(harness.src.path, "a"));
  mkdirSync(join(harness.src.path, "b"));
  for (const dir of ["a", "b"]) for (let i = 0; i < 3; i++) writeFileSync(join(harness.src.path, dir, `f${i}.txt`), `${dir} ${i}`);
  const stop = new AbortController();
  // The stop arrives once the scan has read the set's root folder.
  const childrenStat = harness.journal.index.childrenStat.bind(harness.journal.index);
  const spy = vi.spyOn(harness.journal.index, "childrenStat").mockImplementation((set, dir) => {
    stop.abort();
    return childrenStat(set, dir);
  });
  try {
    await expect(harness.agent.start(stop.signal)).rejects.toThrow(StartInterruptedError);
  } finally {
    spy.mockRestore();
  }
  expect(scanNow(harness.journal.held, SET)).toMatchObject({ agentRunning: true });
  expect(scanFailureNow(harness.journal.held, SET)).toBeNull();
  // What the root's listing found (its two folders) was journaled, not dropped.
  expect(harness.journal.sets.counters(SET).nextSeq).toBe(3);
});

it("names a failed capture of the watcher's changes like a failed scan, until a whole-set scan finds what it lost", async () => {
  const harness = agentHarness(SET);
  h = harness;
  await harness.agent.start();
  await harness.agent.drain(SET);
  writeFileSync(join(harness.src.path, "late.txt"), "reported by the watcher");
  failNextAppend(harness);
  harness.agent.hint(SET, "late.txt");
  await eventually(async () => expect(scanFailureNow(harness.journal.held, SET)).toMatchObject({ folder: "", error: expect.stringContaining("disk I/O error") }), 5_000, 5);
  // Nothing of it was journaled, so nothing is waiting: without the failure named, status would say in sync.
  expect(harness.journal.sets.counters(SET).backlogRecords).toBe(0);
  expect(findProblems(await facts(harness)).map((p) => p.kind)).toEqual(["scan-failed"]);

  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(scanFailureNow(harness.journal.held, SET)).toBeNull();
  expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(harness.src.path));
});
