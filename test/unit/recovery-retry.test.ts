// An owed recovery that keeps failing ran again at every status read (5 s),
// each run journaling another resync and verification. It now runs again
// after a wait that doubles (1 s to 5 minutes), not while the set's sends
// fail, without a new resync while the last one is unapplied, and an
// operator's verified mirror ends it.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import type { SetStatus } from "../../contract/layout.ts";
import { recoverSet, runMirror } from "../../agent/operations.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "docs";
let h: Harness;

afterEach(async () => {
  await h.close();
});

/** Timers the agent starts, fired by the test. */
function manualTimers(): { waits: number[]; fire: () => void; pending: () => number; setTimer: (run: () => void, ms: number) => { cancel(): void } } {
  const timers: { run: () => void; cancelled: boolean }[] = [];
  const waits: number[] = [];
  return {
    waits,
    pending: () => timers.filter((t) => !t.cancelled).length,
    fire: () => {
      const next = timers.find((t) => !t.cancelled);
      if (!next) throw new Error("no timer is pending");
      next.cancelled = true;
      next.run();
    },
    setTimer: (run, ms) => {
      const timer = { run, cancelled: false };
      timers.push(timer);
      waits.push(ms);
      return { cancel: () => (timer.cancelled = true) };
    },
  };
}

/** Owes the set a recovery that this process does not run (as after a failed run). */
function owe(): string {
  const token = h.journal.recoveries.begin(SET, { mode: "diff", orphans: "report", reason: "test" });
  h.journal.recoveries.settle(SET, token);
  return token;
}

it("runs an owed recovery that keeps failing again after a doubling wait, not while sends fail, and from the first wait once one succeeded", async () => {
  const store = new MemoryStore();
  let appliedOverride: number | undefined;
  const targetStatus = async (set: string): Promise<SetStatus | undefined> => {
    const status = await readSetStatus(store, set);
    return status && appliedOverride !== undefined ? { ...status, lastSeq: appliedOverride } : status;
  };
  h = agentHarness(SET, { targetStatus }, { store });
  writeFileSync(join(h.src.path, "a.txt"), "a");
  await h.agent.start();
  await h.agent.drain(SET);
  await h.shutdown();

  const timers = manualTimers();
  const runs: { resyncPending: boolean | undefined }[] = [];
  // Like the runtime's: the run is not awaited, and this one fails at once, leaving the recovery owed.
  h.restart({ targetStatus, recover: async (_set, _reason, _owed, resyncPending) => void runs.push({ resyncPending }), recoveryRetry: { setTimer: timers.setTimer } });
  owe();
  await h.agent.start();
  await h.agent.drain(SET);
  // The start runs an owed recovery at once.
  expect(runs).toHaveLength(1);

  for (const wait of [1000, 2000, 4000]) {
    await h.agent.checkTarget(SET);
    // A second status read while the wait runs starts nothing more.
    await h.agent.checkTarget(SET);
    expect(timers.pending()).toBe(1);
    expect(timers.waits.at(-1)).toBe(wait);
    const before = runs.length;
    timers.fire();
    expect(runs).toHaveLength(before + 1);
  }

  // Sends failing: running it again cannot help.
  h.journal.sets.recordSendError(SET, "queue unreachable");
  await h.agent.checkTarget(SET);
  expect(timers.pending()).toBe(0);
  h.journal.sets.recordSendError(SET, null);

  // A resync this process journaled that the target has not applied: the run is told so.
  const resyncSeq = await h.agent.restartChain(SET, "test");
  appliedOverride = resyncSeq - 1;
  await h.agent.checkTarget(SET);
  timers.fire();
  expect(runs.at(-1)).toEqual({ resyncPending: true });
  expect(timers.waits.at(-1)).toBe(8000);
  appliedOverride = undefined;

  // Once done, the next owed recovery waits the first wait again.
  const token = h.journal.recoveries.tokenOf(SET);
  if (token === undefined) throw new Error("the recovery is not owed");
  h.journal.recoveries.end(SET, token);
  await h.agent.checkTarget(SET);
  expect(timers.pending()).toBe(0);
  owe();
  await h.agent.checkTarget(SET);
  expect(timers.waits.at(-1)).toBe(1000);
});

it("a recovery run while its earlier resync is unapplied journals no new resync, only the verification, and ends", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  writeFileSync(join(h.src.path, "a.txt"), "a");
  await h.agent.start();
  await h.agent.drain(SET);
  const restart = vi.spyOn(h.agent, "restartChain");
  const full = vi.spyOn(h.agent, "fullMirror");
  const verified = recoverSet(h.operations(), SET, "test", "diff", "report", true);
  await h.agent.drain(SET);
  await verified;
  expect(restart).not.toHaveBeenCalled();
  expect(full).not.toHaveBeenCalled();
  expect(h.journal.recoveries.of(SET)).toBeUndefined();
  const resynced = recoverSet(h.operations(), SET, "test", "full", "report");
  await h.agent.drain(SET);
  await resynced;
  expect(full).toHaveBeenCalledTimes(1);
});

it("an operator's verified mirror ends a recovery owed before it", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  writeFileSync(join(h.src.path, "a.txt"), "a");
  await h.agent.start();
  await h.agent.drain(SET);
  owe();
  const mirrored = runMirror(h.operations(), SET, "diff", "report");
  await h.agent.drain(SET);
  await mirrored;
  expect(h.journal.recoveries.of(SET)).toBeUndefined();
});
