// An agent killed in a recovery after its resync was journaled and before the
// verification behind it was: the journal then continues the target's chain
// without a break, so the next start saw nothing to recover, and a file the
// source deleted while its journal was lost stayed in the live mirror while
// status said in sync. The recovery is owed in the journal until its
// verification is reported and its repairs journaled; the next start runs it.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import type { PendingRecovery } from "../../agent/pending-recoveries.ts";
import { recoverSet, type MirrorMode } from "../../agent/operations.ts";
import { targetFileReader } from "../../agent/recovery-baseline.ts";
import { caughtUp, type SetFacts } from "../../agent/set-health.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "docs";
let h: Harness;

afterEach(async () => {
  await h.close();
});

class PowerLost extends Error {
  override name = "PowerLost";
}

/** What `tidemark status` weighs to call the set in sync, read from the harness's journal and target. */
async function facts(store: MemoryStore): Promise<SetFacts> {
  return {
    set: SET,
    counters: h.journal.sets.counters(SET),
    generation: h.journal.sets.knownGeneration(SET),
    recovering: h.journal.recoveries.of(SET) ?? null,
    target: { status: await readSetStatus(store, SET) },
    now: new Date(),
  };
}

/** The agent restarted with the runtime's recovery: recoverSet, in the mode a recovery owed from before names. */
function restartWithRecovery(store: MemoryStore, mode: MirrorMode, retry: (run: () => void) => void = () => undefined): { recovering: () => Promise<void> | undefined; owed: () => PendingRecovery | undefined } {
  let recovering: Promise<void> | undefined;
  let owed: PendingRecovery | undefined;
  h.restart({
    // The test runs a failed recovery again itself, without waiting.
    recoveryRetry: {
      setTimer: (run) => {
        retry(run);
        return { cancel: () => undefined };
      },
    },
    targetStatus: (set) => readSetStatus(store, set),
    targetFile: targetFileReader(store),
    recover: async (set, reason, resumed) => {
      owed = resumed;
      const given = resumed?.mode === "full" || resumed?.mode === "checksum" || resumed?.mode === "diff" ? resumed.mode : mode;
      recovering = recoverSet(h.operations(), set, reason, given, resumed?.orphans ?? "report");
      // Awaited by the test once the agent started: a failure before then is not unhandled.
      recovering.catch(() => undefined);
    },
  });
  return { recovering: () => recovering, owed: () => owed };
}

for (const mode of ["diff", "full"] as const) {
  it(`a recovery (${mode}) killed after its resync and before its verification runs again at the next start: the file deleted meanwhile leaves the mirror, and status is never in sync before`, async () => {
    const store = new MemoryStore();
    h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
    const src = h.src.path;
    writeFileSync(join(src, "kept.txt"), "kept");
    writeFileSync(join(src, "gone.txt"), "deleted while the journal was lost");
    await h.agent.start();
    await h.agent.drain(SET);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src));

    // The journal is lost, and a file is deleted on the source meanwhile: only the recovery's verification deletes it on the target.
    await h.shutdown();
    rmSync(h.state.path, { recursive: true, force: true });
    mkdirSync(h.state.path);
    rmSync(join(src, "gone.txt"));

    const first = restartWithRecovery(store, mode);
    // The power goes as the verification is journaled: its transaction never commits.
    const append = h.journal.append.bind(h.journal);
    const spy = vi.spyOn(h.journal, "append").mockImplementation((set, changes) => {
      if (changes.some((c) => c.op === "verify")) throw new PowerLost("power lost while journaling the verification");
      return append(set, changes);
    });
    await h.agent.start();
    await expect(first.recovering()).rejects.toThrow(PowerLost);
    spy.mockRestore();
    await h.agent.drain(SET);
    // The target applied the resync and the scan's records: the chain continues, yet the deleted file is still there.
    const between = await facts(store);
    expect(between.target).toMatchObject({ status: { state: "in-sync", generation: h.journal.sets.generation(SET).id } });
    expect(Object.keys(await pictureOfTarget(store, SET))).toContain("gone.txt");
    expect(between.recovering).toMatchObject({ mode, orphans: "report" });
    expect(caughtUp(between)).toBe(false);
    // Only the owed recovery keeps it from "in sync".
    expect(caughtUp({ ...between, recovering: null })).toBe(true);

    await h.shutdown();
    const second = restartWithRecovery(store, mode);
    await h.agent.start();
    expect(second.owed()).toMatchObject({ mode, orphans: "report", since: between.recovering?.since });
    await second.recovering();
    await h.agent.drain(SET);

    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src));
    const after = await facts(store);
    expect(after.recovering).toBeNull();
    expect(caughtUp(after)).toBe(true);
  });
}

it("a recovery that failed while the agent kept running runs again after the status read's wait", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  const src = h.src.path;
  writeFileSync(join(src, "kept.txt"), "kept");
  writeFileSync(join(src, "gone.txt"), "deleted while the journal was lost");
  await h.agent.start();
  await h.agent.drain(SET);
  await h.shutdown();
  rmSync(h.state.path, { recursive: true, force: true });
  mkdirSync(h.state.path);
  rmSync(join(src, "gone.txt"));

  let again: (() => void) | undefined;
  const run = restartWithRecovery(store, "diff", (retry) => (again = retry));
  const append = h.journal.append.bind(h.journal);
  let failing = true;
  const spy = vi.spyOn(h.journal, "append").mockImplementation((set, changes) => {
    if (failing && changes.some((c) => c.op === "verify")) throw new PowerLost("the disk failed while journaling the verification");
    return append(set, changes);
  });
  try {
    await h.agent.start();
    const failed = run.recovering();
    await expect(failed).rejects.toThrow(PowerLost);
    failing = false;
    await h.agent.drain(SET);
    expect(h.journal.recoveries.of(SET)).toMatchObject({ mode: "diff" });
    await h.agent.checkTarget(SET);
    again?.();
    expect(run.recovering()).not.toBe(failed);
    await run.recovering();
  } finally {
    spy.mockRestore();
  }
  await h.agent.drain(SET);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src));
  expect(h.journal.recoveries.of(SET)).toBeUndefined();
  // Nothing owed and nothing out of sync: the next status read starts nothing.
  const done = run.recovering();
  await h.agent.checkTarget(SET);
  expect(run.recovering()).toBe(done);
});

it("a start owing no recovery runs none", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  writeFileSync(join(h.src.path, "a.txt"), "a");
  await h.agent.start();
  await h.agent.drain(SET);
  await h.shutdown();
  const restarted = restartWithRecovery(store, "diff");
  await h.agent.start();
  await h.agent.drain(SET);
  expect(restarted.recovering()).toBeUndefined();
  expect(h.journal.recoveries.of(SET)).toBeUndefined();
});
