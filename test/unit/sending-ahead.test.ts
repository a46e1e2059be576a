// `task --wait` gave up with "the target has not moved for 10 min" while the
// agent was uploading a large file journaled ahead of the marker (a slow or
// bandwidth-capped link): the target cannot move before that upload ends.
// The agent sending ahead of the marker now counts as busy, as a marker's
// running action does; not once its sends fail, the marker went, the journal
// left the marker's generation, or no agent runs.

import { afterEach, expect, it } from "vitest";
import { taskResultKey } from "../../contract/layout.ts";
import type { TaskResult } from "../../contract/tasks.ts";
import { Journal } from "../../agent/journal.ts";
import { sendingAhead, SENDING_FLOOR_BYTES_PER_SECOND } from "../../agent/sending-ahead.ts";
import { acquireStateLock, type StateLock } from "../../agent/state-lock.ts";
import { waitForTask } from "../../agent/task-results.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { tempDir } from "../support/tree.ts";

const SET = "db";
let dir: ReturnType<typeof tempDir> | undefined;
let lock: StateLock | undefined;

afterEach(() => {
  lock?.release();
  lock = undefined;
  dir?.remove();
  dir = undefined;
});

/** A state folder whose journal holds a large put and a marker behind it, none sent. */
function journalWithMarkerBehindUpload(): { stateDir: string; marker: { seq: number; generation: string } } {
  dir = tempDir("tidemark-sending-ahead-");
  const journal = Journal.open(dir.path);
  try {
    journal.sets.register(SET);
    const [, seq] = journal.append(SET, [
      { op: "put", path: "big.db", size: 5, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { bytes: Buffer.from("large") } },
      { op: "task", id: "t1", fields: { action: "snapshot", timeoutSeconds: 300 } },
    ]);
    return { stateDir: dir.path, marker: { seq: seq ?? 0, generation: journal.sets.generation(SET).id } };
  } finally {
    journal.close();
  }
}

it("is busy while a running agent has not sent the marker and its sends do not fail", async () => {
  const { stateDir, marker } = journalWithMarkerBehindUpload();
  const busy = sendingAhead(stateDir, SET, marker);
  // No agent runs: nothing is being sent (the wait's unsent check says so at once).
  expect(await busy()).toBe(false);
  lock = acquireStateLock(stateDir, "tidemark run");
  expect(await busy()).toBe(true);
  // Another generation's seqs say nothing of this marker.
  expect(await sendingAhead(stateDir, SET, { ...marker, generation: "other" })()).toBe(false);

  const journal = Journal.open(stateDir);
  try {
    journal.sets.recordSendError(SET, "connect ECONNREFUSED 127.0.0.1:4566");
    expect(await busy()).toBe(false);
    journal.sets.recordSendError(SET, null);
    expect(await busy()).toBe(true);
    journal.markSent(SET, marker.seq, 100);
    expect(await busy()).toBe(false);
  } finally {
    journal.close();
  }
});

it("stops counting as busy once the backlog would have gone at the floor rate, plus ten minutes", async () => {
  const { stateDir, marker } = journalWithMarkerBehindUpload();
  lock = acquireStateLock(stateDir, "tidemark run");
  const journal = Journal.open(stateDir);
  const backlogBytes = journal.sets.counters(SET).backlogBytes;
  journal.close();
  let now = 1_000_000;
  const busy = sendingAhead(stateDir, SET, marker, { now: () => now });
  expect(await busy()).toBe(true);
  const budgetMs = 10 * 60_000 + (backlogBytes / SENDING_FLOOR_BYTES_PER_SECOND) * 1000;
  now += budgetMs - 1;
  expect(await busy()).toBe(true);
  now += 1;
  // A sender that never moved nor failed: the wait's stall limit applies again.
  expect(await busy()).toBe(false);
});

it("keeps task --wait waiting past the stall limit while the agent sends ahead of the marker", async () => {
  const store = new MemoryStore();
  let sending = true;
  const waiting = waitForTask(store, SET, "t1", { seq: 2, stallMs: 50, pollMs: 10, busy: () => Promise.resolve(sending) });
  const outcome = waiting.then(
    () => "done",
    (error: unknown) => String(error),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  // Still waiting, many stall limits later.
  expect(await Promise.race([outcome, Promise.resolve("waiting")])).toBe("waiting");
  // Not sending any more, but another marker's action holds the stream: still busy (the caller's check adds to it).
  const running: TaskResult = { id: "t0", set: SET, seq: 1, action: "snapshot", status: "running", timeoutSeconds: 900, reachedAt: new Date(0).toISOString(), attempts: 1, outputs: {} };
  await store.put(taskResultKey(SET, running.id), Buffer.from(JSON.stringify(running)), {});
  sending = false;
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(await Promise.race([outcome, Promise.resolve("waiting")])).toBe("waiting");
  await store.put(taskResultKey(SET, running.id), Buffer.from(JSON.stringify({ ...running, status: "succeeded" })), {});
  expect(await outcome).toMatch(/gave up waiting for task t1 \(seq 2\) of set "db": the target has not moved/);
});
