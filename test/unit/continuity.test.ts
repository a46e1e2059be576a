// A journal lost or restored from an older copy while the agent was stopped
// (issue 15): the agent begins a new generation, later changes (deletions
// included) reach the target, status never claims sync in between, and no
// wait hangs on the target's seqs of another generation.

import { cpSync, existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { recoverSet, runVerify, OperationTimeoutError, type OperationDeps, type Progress } from "../../agent/operations.ts";
import { caughtUp, findProblems, type SetFacts } from "../../agent/set-health.ts";
import { TargetMismatchError, waitOnTarget, type Found } from "../../agent/target-wait.ts";
import { markerRunning, waitForTask } from "../../agent/task-results.ts";
import { initialStatus, ownerKey, statusKey, taskResultKey, type SetStatus } from "../../contract/layout.ts";
import type { TaskResult } from "../../contract/tasks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { ownerRecordFor } from "../support/messages.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "docs";

/** What `tidemark status` would say of the set now. */
async function facts(h: Harness): Promise<SetFacts> {
  return {
    set: SET,
    counters: h.journal.sets.counters(SET),
    generation: h.journal.sets.knownGeneration(SET),
    target: { status: await readSetStatus(h.store, SET) },
    now: new Date(),
  };
}

async function claimsSync(h: Harness): Promise<boolean> {
  const now = await facts(h);
  return findProblems(now).length === 0 && caughtUp(now);
}

function write(h: Harness, path: string, text: string): void {
  writeFileSync(join(h.src.path, path), text);
}

/** Many changes, so the target's seq is well past what a new journal starts at. */
async function churn(h: Harness, rounds: number): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    write(h, `churn-${i % 5}.txt`, `round ${i}`);
    await h.agent.scan(SET);
  }
  await h.agent.drain(SET);
}

describe("journal continuity", () => {
  let h: Harness;

  afterEach(async () => {
    await h.close();
  });

  const matches = async () => expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));

  it("a journal deleted while the agent was stopped: a new generation, and later changes and deletions reach the target", async () => {
    const store = new MemoryStore();
    h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
    for (const name of ["keep.txt", "delete-me.txt", "edit-me.txt"]) write(h, name, `first ${name}`);
    await h.agent.start();
    await churn(h, 30);
    await matches();
    expect(await claimsSync(h)).toBe(true);
    const before = await readSetStatus(store, SET);

    await h.shutdown();
    // Only the journal goes: the spool folder and anything else in the state dir stay.
    for (const file of ["journal.db", "journal.db-wal", "journal.db-shm"]) rmSync(join(h.state.path, file), { force: true });
    expect(existsSync(join(h.state.path, "spool"))).toBe(true);
    h.restart();
    // The target is ahead of the new journal: status says so before the agent runs.
    expect(await claimsSync(h)).toBe(false);
    expect(findProblems(await facts(h)).map((p) => p.kind)).toEqual(["other-generation"]);

    await h.agent.start();
    expect(await claimsSync(h)).toBe(false);
    await h.agent.drain(SET);
    const after = await readSetStatus(store, SET);
    expect(after.generation).not.toBe(before.generation);
    expect(after.generations?.at(-1)?.reason).toMatch(/^replaces generation \w+ \(applied up to seq \d+\): new journal generation \w+: .*the journal was lost or replaced$/);

    write(h, "new.txt", "written after the journal was lost");
    write(h, "edit-me.txt", "edited after the journal was lost");
    rmSync(join(h.src.path, "delete-me.txt"));
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    await matches();
    expect(await claimsSync(h)).toBe(true);
  });

  it("a journal restored from an older copy of the state folder: a new generation, and later changes and deletions reach the target", async () => {
    const store = new MemoryStore();
    h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
    for (const name of ["a.txt", "b.txt", "c.txt"]) write(h, name, `first ${name}`);
    await h.agent.start();
    await h.agent.drain(SET);

    // The backup: a copy of the state folder while the agent is stopped.
    await h.shutdown();
    const backup = `${h.state.path}-backup`;
    cpSync(h.state.path, backup, { recursive: true });
    h.restart();
    await h.agent.start();
    await churn(h, 30);
    rmSync(join(h.src.path, "b.txt"));
    write(h, "made-after-backup.txt", "x");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    await matches();

    await h.shutdown();
    rmSync(h.state.path, { recursive: true, force: true });
    cpSync(backup, h.state.path, { recursive: true });
    rmSync(backup, { recursive: true, force: true });
    h.restart();
    // Same generation as the target, behind it: status does not claim sync.
    expect(findProblems(await facts(h)).map((p) => p.kind)).toEqual(["target-ahead"]);

    await h.agent.start();
    // A new generation is begun; until the target reaches its resync, status names that.
    expect(findProblems(await facts(h)).map((p) => p.kind)).toEqual(["generation-change"]);
    await h.agent.drain(SET);
    expect((await readSetStatus(store, SET)).generation).toBe(h.journal.sets.generation(SET).id);
    rmSync(join(h.src.path, "a.txt"));
    rmSync(join(h.src.path, "made-after-backup.txt"));
    write(h, "c.txt", "changed after the restore");
    write(h, "d.txt", "new after the restore");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    await matches();
    expect(await claimsSync(h)).toBe(true);
  });

  it("recovers with a diff mirror when the runtime's recovery is given: the new generation's resync, then only what differs", async () => {
    const store = new MemoryStore();
    let deps: OperationDeps | undefined;
    h = agentHarness(SET, {
      targetStatus: (set) => readSetStatus(store, set),
      recover: (set, reason) => (deps ? recoverSet(deps, set, reason, "diff", "delete") : Promise.resolve()),
    }, { store });
    deps = h.operations();
    write(h, "gone-while-stopped.txt", "deleted while the agent was stopped");
    write(h, "stays.txt", "stays");
    await h.agent.start();
    await churn(h, 20);

    await h.shutdown();
    rmSync(join(h.state.path, "journal.db"));
    rmSync(join(h.state.path, "journal.db-wal"), { force: true });
    rmSync(join(h.state.path, "journal.db-shm"), { force: true });
    rmSync(join(h.src.path, "gone-while-stopped.txt"));
    h.restart();
    deps = h.operations();
    await h.agent.start();
    // The verification behind the resync finds the file deleted while no journal knew of it.
    await h.agent.drain(SET);
    await expect.poll(async () => (await pictureOfTarget(store, SET))["gone-while-stopped.txt"], { interval: 5, timeout: 5_000 }).toBeUndefined();
    await h.agent.drain(SET);
    await matches();
  });
});

describe("waits on a target in another generation", () => {
  let h: Harness;

  afterEach(async () => {
    await h.close();
  });

  /** The set's history was written by this host: its key is the registered owner (a set with history is never claimed by first use). */
  async function ownedBy(store: MemoryStore, harness: Harness): Promise<void> {
    await store.put(ownerKey(SET), Buffer.from(JSON.stringify(ownerRecordFor(SET, harness.transport.key))), {});
  }

  /** A target 57,689 records into a generation this journal has never been part of. */
  async function aheadTarget(store: MemoryStore, patch: Partial<SetStatus> = {}): Promise<void> {
    const status: SetStatus = { ...initialStatus(SET), lastSeq: 57_689, generation: "elsewhere", generations: [{ id: "elsewhere", since: new Date(0).toISOString(), seq: 1, reason: "first" }], updatedAt: new Date(0).toISOString(), ...patch };
    await store.put(statusKey(SET), Buffer.from(JSON.stringify(status)), {});
  }

  it("verify on a target ahead in another generation fails within its bound, naming what the target says, instead of counting its seqs", async () => {
    const store = new MemoryStore();
    await aheadTarget(store);
    // No continuity check (an agent that does not read the target's status): the target holds the set.
    h = agentHarness(SET, {}, { store });
    await ownedBy(store, h);
    write(h, "a.txt", "a");
    await h.agent.start();
    const progress: number[] = [];
    const deps: OperationDeps = { ...h.operations(), stallMs: 50, timeoutMs: 60_000, onProgress: (p) => p.phase === "wait" && progress.push(p.appliedSeq) };
    const failure = await runVerify(deps, SET, { deep: false, repair: false, orphans: "report" }).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(OperationTimeoutError);
    expect(String(failure)).toMatch(/the verification \(seq \d+\) of set "docs": the target has not moved .* generation elsewhere, out-of-sync: records of journal generation/);
    // The other generation's seq 57,689 is never shown as progress of this journal's record.
    expect(progress.every((seq) => seq === 0)).toBe(true);
  });

  it("verify resolves once the agent checks continuity: the new generation's resync restarts the chain", async () => {
    const store = new MemoryStore();
    await aheadTarget(store);
    h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
    await ownedBy(store, h);
    write(h, "a.txt", "a");
    await h.agent.start();
    const result = await runVerify({ ...h.operations(), stallMs: 5_000 }, SET, { deep: false, repair: false, orphans: "report" });
    expect(result.report.missing).toEqual([]);
    expect((await readSetStatus(store, SET)).generation).toBe(h.journal.sets.generation(SET).id);
  });

  it("task --wait fails at once when the target left the marker's generation, and when it passed the marker without a result", async () => {
    const store = new MemoryStore();
    h = agentHarness(SET, {}, { store });
    await aheadTarget(store, { generations: [{ id: "old", since: "", seq: 1, reason: "" }, { id: "elsewhere", since: "", seq: 1, reason: "" }] });
    await expect(waitForTask(store, SET, "t1", { seq: 12, generation: "old", pollMs: 1 })).rejects.toThrow(TargetMismatchError);
    await expect(waitForTask(store, SET, "t1", { seq: 12, generation: "old", pollMs: 1 })).rejects.toThrow(/task t1 \(seq 12\) of set "docs" will never be reached: the target left journal generation old for elsewhere/);
    await expect(waitForTask(store, SET, "t2", { seq: 12, generation: "elsewhere", pollMs: 1 })).rejects.toThrow(/the target passed task t2 \(seq 12\) of set "docs" without its result/);
  });

  it("task --wait gives up when the target does not move, naming the seq it waited for and the target's state", async () => {
    const store = new MemoryStore();
    h = agentHarness(SET, {}, { store });
    await aheadTarget(store, { state: "out-of-sync", reason: "seq gap: expected 57690, got 57700" });
    await expect(waitForTask(store, SET, "t3", { seq: 3, generation: "mine", pollMs: 1, stallMs: 30 })).rejects.toThrow(
      /gave up waiting for task t3 \(seq 3\) of set "docs": the target has not moved .*applied seq 57689 of generation elsewhere, out-of-sync: seq gap/,
    );
  });

  it("reports a marker the target reached whose action still runs as running, not as a seq not yet applied", async () => {
    const store = new MemoryStore();
    h = agentHarness(SET, {}, { store });
    await aheadTarget(store, { generation: "mine", lastSeq: 5 });
    const reads: Array<Found<string>> = [undefined, { running: true }, { done: "finished" }];
    const seen: Progress[] = [];
    const result = await waitOnTarget({ set: SET, what: "task t6 (seq 6)", seq: 6, generation: "mine" }, async () => reads.shift(), () => readSetStatus(store, SET), {
      pollMs: 1,
      onProgress: (progress) => seen.push(progress),
    });
    expect(result).toBe("finished");
    expect(seen).toEqual([
      { phase: "wait", seq: 6, appliedSeq: 5 },
      { phase: "wait", seq: 6, appliedSeq: 5, running: true },
    ]);
  });

  it("does not give up behind a marker whose action holds the stream", async () => {
    const store = new MemoryStore();
    h = agentHarness(SET, {}, { store });
    await aheadTarget(store, { generation: "mine", lastSeq: 4 });
    const running: TaskResult = { id: "t-before", set: SET, seq: 5, action: "snapshot", status: "running", timeoutSeconds: 900, reachedAt: new Date(0).toISOString(), attempts: 1, outputs: {} };
    await store.put(taskResultKey(SET, running.id), Buffer.from(JSON.stringify(running)), {});
    expect(await markerRunning(store, SET)).toBe(true);
    let excused = 0;
    let done = false;
    const result = await waitOnTarget(
      { set: SET, what: "task t-after (seq 6)", seq: 6, generation: "mine" },
      async () => (done ? { done: "finished" } : undefined),
      () => readSetStatus(store, SET),
      {
        pollMs: 1,
        stallMs: 1,
        busy: async () => {
          // The stall clock ran out three times while the earlier marker held the stream; then ours finishes.
          excused += 1;
          if (excused === 3) done = true;
          return markerRunning(store, SET);
        },
      },
    );
    expect(result).toBe("finished");
    await store.put(taskResultKey(SET, running.id), Buffer.from(JSON.stringify({ ...running, status: "succeeded", finishedAt: new Date(1).toISOString() })), {});
    expect(await markerRunning(store, SET)).toBe(false);
  });
});
