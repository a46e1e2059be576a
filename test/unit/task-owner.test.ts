// A task result names its marker (set, seq, journal generation): a waiter
// takes only its own marker's result, never another marker's that holds the
// same id (a marker sent straight to the queue took it, or an older
// generation's marker).

import { expect, it } from "vitest";
import { waitForTask } from "../../agent/task-results.ts";
import { initialStatus, statusKey, taskResultKey } from "../../contract/layout.ts";
import { collisionTaskId, resultOfMarker } from "../../contract/task-owner.ts";
import type { TaskResult } from "../../contract/tasks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";

const SET = "db";
const ID = "20261130T190000Z-abcdef";

const taskResult = (extra: Partial<TaskResult>): TaskResult => ({
  id: ID,
  set: SET,
  seq: null,
  action: "snapshot",
  status: "succeeded",
  timeoutSeconds: 60,
  reachedAt: "2026-11-30T19:00:00.000Z",
  finishedAt: "2026-11-30T19:00:01.000Z",
  attempts: 1,
  outputs: {},
  ...extra,
});

const put = (store: MemoryStore, key: string, value: unknown) => store.put(key, Buffer.from(JSON.stringify(value)), {});

it("tells a marker's own result from another marker's under the same id; a marker of unknown generation matches on set and seq", () => {
  const marker = { set: SET, seq: 7, generation: "g2" };
  expect(resultOfMarker(taskResult({ seq: 7, generation: "g2" }), marker)).toBe(true);
  expect(resultOfMarker(taskResult({ seq: null }), marker)).toBe(false);
  expect(resultOfMarker(taskResult({ seq: 7, generation: "g1" }), marker)).toBe(false);
  expect(resultOfMarker(taskResult({ seq: 8, generation: "g2" }), marker)).toBe(false);
  expect(resultOfMarker(taskResult({ seq: null }), { set: SET, seq: null })).toBe(true);
  expect(collisionTaskId(ID, marker)).toBe(`${ID}~g2~7`);
  expect(collisionTaskId(ID, { set: SET, seq: null })).toBe(`${ID}~queue`);
});

it("takes a result without a generation only for a marker without one: the seqs restart with each generation", () => {
  // Written while the set had no generation (or before results named theirs): not a later generation's marker at that seq.
  expect(resultOfMarker(taskResult({ seq: 7 }), { set: SET, seq: 7, generation: "g2" })).toBe(false);
  expect(resultOfMarker(taskResult({ seq: 7 }), { set: SET, seq: 7 })).toBe(true);
  // A marker of unknown generation (an old agent's) still matches on set and seq.
  expect(resultOfMarker(taskResult({ seq: 7, generation: "g2" }), { set: SET, seq: 7 })).toBe(true);
});

it("task --wait takes the result its own marker ran under, not the queue marker's or another generation's that holds its id", async () => {
  const store = new MemoryStore();
  await put(store, statusKey(SET), { ...initialStatus(SET), generation: "g2", lastSeq: 7 });
  await put(store, taskResultKey(SET, ID), taskResult({ seq: null, label: "console" }));
  await put(store, taskResultKey(SET, `${ID}~g2~7`), taskResult({ id: `${ID}~g2~7`, requestedId: ID, seq: 7, generation: "g2", label: "agent" }));
  const waited = await waitForTask(store, SET, ID, { seq: 7, generation: "g2", pollMs: 1, stallMs: 60_000 });
  expect(waited).toMatchObject({ id: `${ID}~g2~7`, seq: 7, label: "agent" });

  // Another generation's marker at the same seq under the id: not this one's either.
  await put(store, taskResultKey(SET, ID), taskResult({ seq: 7, generation: "g1", label: "older generation" }));
  expect(await waitForTask(store, SET, ID, { seq: 7, generation: "g2", pollMs: 1, stallMs: 60_000 })).toMatchObject({ label: "agent" });

  // Its own result under the id it asked for is taken as before.
  await put(store, taskResultKey(SET, ID), taskResult({ seq: 7, generation: "g2", label: "own" }));
  expect(await waitForTask(store, SET, ID, { seq: 7, generation: "g2", pollMs: 1, stallMs: 60_000 })).toMatchObject({ id: ID, label: "own" });
});
