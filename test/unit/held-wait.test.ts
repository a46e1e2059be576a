// A wait on the target while this host's sends of the set are held (another
// key owns it): an operator's wait fails at once, or as soon as the hold
// begins, with the owner's key and `tidemark adopt`; the agent's own wait
// (a recovery) goes on, its stall clock and deadline stopped, and ends with
// the result once the hold ends. A record the target already reached is not
// affected by the hold. Other waits that could only run out the stall limit:
// `task --wait` after the agent stopped with the marker unsent ends at once,
// and a wait that gives up says when this host's sends are failing.

import { spawnSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { initialStatus, type SetStatus } from "../../contract/layout.ts";
import { generateSigningKey } from "../../contract/signing.ts";
import { callControl, controlSocketPath, startControlServer } from "../../agent/control.ts";
import { processStart } from "../../agent/process-identity.ts";
import { acquireStateLock } from "../../agent/state-lock.ts";
import { decideWhileHeld, HeldWaitError, type HeldBy, type WhileHeld } from "../../agent/held-wait.ts";
import { OperationTimeoutError, runVerify } from "../../agent/operations.ts";
import { heldByOwnerRecord, unsentWithoutAgent, waitForTask } from "../../agent/task-results.ts";
import { RecordNotSentError, waitOnTarget, type Found } from "../../agent/target-wait.ts";
import { writeOwner } from "../../lambdas/target/owner.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { agentHarness } from "../support/harness.ts";
import { eventually } from "../support/local-cloud.ts";
import { ownerRecordFor } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

const SET = "db";
const HELD: HeldBy = { set: SET, ownerKeyId: "0wner0wner0wner0", ownerSince: "2026-11-30T10:00:00.000Z", hostKeyId: "h0sth0sth0sth0st" };
const RECORD = { set: SET, what: "the verification (seq 5)", seq: 5, generation: "g1" };
const status = (): Promise<SetStatus> => Promise.resolve({ ...initialStatus(SET), generation: "g1", lastSeq: 2 });

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir();
});
afterEach(() => dir.remove());

it("decides per poll: a held, unreached record fails an operator's wait and pauses the agent's own; otherwise the wait goes on", () => {
  const policies: WhileHeld[] = ["fail", "wait"];
  for (const policy of policies) {
    expect(decideWhileHeld(undefined, false, policy)).toEqual({ kind: "go" });
    // Reached (its action running) or passed: the result comes whatever this host sends.
    expect(decideWhileHeld(HELD, true, policy)).toEqual({ kind: "go" });
  }
  expect(decideWhileHeld(HELD, false, "fail")).toEqual({ kind: "fail", held: HELD });
  expect(decideWhileHeld(HELD, false, "wait")).toEqual({ kind: "pause" });
});

it("fails an operator's wait at once while held, naming the set, the owner's key, this host's and `tidemark adopt`", async () => {
  let reads = 0;
  const failed = await waitOnTarget(
    RECORD,
    async () => {
      reads++;
      return undefined;
    },
    status,
    { stallMs: 60_000, timeoutMs: 60_000, pollMs: 1, held: { by: async () => HELD, policy: "fail" } },
  ).catch((error: unknown) => error);
  expect(failed).toBeInstanceOf(HeldWaitError);
  const message = failed instanceof Error ? failed.message : "";
  expect(message).toContain(`the verification (seq 5) of set "${SET}" will not be reached while this host's sends of the set are held`);
  expect(message).toContain(`names key ${HELD.ownerKeyId} (since ${HELD.ownerSince}), not this host's key ${HELD.hostKeyId}`);
  expect(message).toContain(`tidemark adopt ${SET}`);
  expect(reads).toBe(1);
  expect(JSON.parse(JSON.stringify(failed))).toMatchObject({ error: "sends-held", set: SET, ownerKeyId: HELD.ownerKeyId, hostKeyId: HELD.hostKeyId, remedy: `tidemark adopt ${SET}` });
});

it("ends an operator's wait with the same error when the hold begins while it waits (not after the stall limit)", async () => {
  let polls = 0;
  const failed = await waitOnTarget(
    RECORD,
    async () => {
      polls++;
      return undefined;
    },
    status,
    { stallMs: 60_000, timeoutMs: 60_000, pollMs: 1, held: { by: async () => (polls > 5 ? HELD : undefined), policy: "fail" } },
  ).catch((error: unknown) => error);
  expect(failed).toBeInstanceOf(HeldWaitError);
  expect(polls).toBe(6);
});

it("does not fail a wait for a record the target already reached, held or not", async () => {
  let polls = 0;
  const result = await waitOnTarget(
    RECORD,
    async (): Promise<Found<string>> => {
      polls++;
      return polls < 5 ? { running: true } : { done: "succeeded" };
    },
    status,
    { pollMs: 1, held: { by: async () => HELD, policy: "fail" } },
  );
  expect(result).toBe("succeeded");
});

it("keeps the agent's own wait going while held, past its stall limit and deadline, and ends it with the result once the hold ends", async () => {
  // Held for four times the deadline, and for two polls at least (a loaded machine may poll first after that). The
  // result is there from the last held poll on: that poll's pause restarts both limits, and the next read returns
  // the result before any limit is looked at, so no slow poll can trip them.
  const heldUntil = Date.now() + 1_000;
  let heldPolls = 0;
  let released = false;
  const result = await waitOnTarget(
    RECORD,
    async (): Promise<Found<string>> => (released ? { done: "report" } : undefined),
    status,
    {
      stallMs: 125,
      timeoutMs: 250,
      pollMs: 1,
      held: {
        by: async () => {
          heldPolls++;
          if (Date.now() >= heldUntil && heldPolls >= 2) released = true;
          return HELD;
        },
        policy: "wait",
      },
    },
  );
  expect(result).toBe("report");
  expect(heldPolls).toBeGreaterThan(1);
});

it("still gives up on a stalled target once the hold ended (the limits run again)", async () => {
  let polls = 0;
  const failed = await waitOnTarget(RECORD, async () => undefined, status, {
    stallMs: 20,
    pollMs: 1,
    held: {
      by: async () => {
        polls++;
        return polls < 3 ? HELD : undefined;
      },
      policy: "wait",
    },
  }).catch((error: unknown) => error);
  expect(failed).toBeInstanceOf(OperationTimeoutError);
});

it("task --wait: the target's owner record naming another key ends the wait for the marker with the reason", async () => {
  const store = new MemoryStore();
  const mine = generateSigningKey();
  const other = generateSigningKey();
  const held = heldByOwnerRecord(store, SET, mine.keyId, 0);
  // No record (the set's first use) and one naming this host's key hold nothing.
  expect(await held()).toBeUndefined();
  await writeOwner(store, ownerRecordFor(SET, mine));
  expect(await held()).toBeUndefined();
  await writeOwner(store, ownerRecordFor(SET, other));
  // Read again when due; a set not held goes on meanwhile, so the next poll sees the hold.
  await eventually(async () => expect(await held()).toMatchObject({ set: SET, ownerKeyId: other.keyId, hostKeyId: mine.keyId }), 5_000, 1);

  const failed = await waitForTask(store, SET, "0192task", { seq: 3, pollMs: 1, stallMs: 60_000, held: { by: held, policy: "fail" } }).catch((error: unknown) => error);
  expect(failed).toBeInstanceOf(HeldWaitError);
  expect(failed instanceof Error ? failed.message : "").toContain(`task 0192task (seq 3) of set "${SET}" will not be reached`);
});

it("carries a held wait over the control socket as the same error, so the command can print it (--json)", async () => {
  const path = controlSocketPath(dir.path);
  const server = await startControlServer(path, {
    "/verify": async () => {
      throw new HeldWaitError("the verification (seq 5)", HELD);
    },
  });
  try {
    const failed = await callControl(path, "/verify", {}).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(HeldWaitError);
    expect(failed instanceof HeldWaitError ? failed.held : undefined).toEqual(HELD);
    expect(failed instanceof Error ? failed.message : "").toBe(new HeldWaitError("the verification (seq 5)", HELD).message);
  } finally {
    await server.close();
  }
});

it("task --wait: an agent that stopped with the marker unsent ends the wait with the reason; a sent marker, or an agent answering or starting (holding the state lock), waits on", async () => {
  const h = agentHarness(SET);
  try {
    await h.agent.start();
    const marker = await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
    const unsent = unsentWithoutAgent(h.state.path, SET, marker, 0);
    // Nobody answers on the state folder's control socket and the journal has not sent the marker.
    expect(await unsent()).toContain(`no agent is running on ${h.state.path} to send it (the journal sent up to seq 0)`);
    const failed = await waitForTask(h.store, SET, marker.id, { seq: marker.seq, generation: marker.generation, pollMs: 1, stallMs: 60_000, unsent }).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(RecordNotSentError);
    expect(failed instanceof Error ? failed.message : "").toContain(`task ${marker.id} (seq ${marker.seq}) of set "${SET}" will not be reached: no agent is running`);

    // An agent answering sends it.
    const server = await startControlServer(controlSocketPath(h.state.path), {});
    try {
      expect(await unsent()).toBeUndefined();
    } finally {
      await server.close();
    }
    // An agent starting (it holds the state folder's lock and checks the target before its socket listens) sends it.
    const lock = acquireStateLock(h.state.path, "tidemark run");
    try {
      expect(await unsent()).toBeUndefined();
    } finally {
      lock.release();
    }
    // So does one in another live process; a lock left by a process that is gone does not count.
    const lockFile = join(h.state.path, "tidemark.lock");
    const other = { pid: process.ppid, host: hostname(), command: "tidemark run", started: processStart(process.ppid) };
    writeFileSync(lockFile, JSON.stringify(other));
    expect(await unsent()).toBeUndefined();
    writeFileSync(lockFile, JSON.stringify({ ...other, pid: spawnSync(process.execPath, ["-e", ""]).pid, started: undefined }));
    expect(await unsent()).toContain("no agent is running");
    rmSync(lockFile);
    // Sent: the target gets it whether or not an agent still runs.
    await h.agent.drain(SET);
    expect(await unsent()).toBeUndefined();
  } finally {
    await h.close();
  }
});

it("a verification that gives up on a target that does not move says why this host's sends do not reach it", async () => {
  const h = agentHarness(SET);
  try {
    await h.agent.start();
    h.journal.sets.recordSendError(SET, "connect ECONNREFUSED 127.0.0.1:9");
    const deps = { ...h.operations(), readReport: async () => undefined, stallMs: 20 };
    const failed = await runVerify(deps, SET, { deep: false, repair: false, orphans: "delete" }).catch((error: unknown) => error);
    expect(failed).toBeInstanceOf(OperationTimeoutError);
    expect(failed instanceof Error ? failed.message : "").toMatch(/the target has not moved for 0 s \(.*\); this host's sends of the set fail \(retried\): connect ECONNREFUSED 127\.0\.0\.1:9; see `tidemark status`/);
  } finally {
    await h.close();
  }
});
