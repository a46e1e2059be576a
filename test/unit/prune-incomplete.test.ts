// prune --keep N stays bounded when snapshots keep leaving entries out: the newest N of any kind plus the newest N complete.
import { expect, it } from "vitest";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { pruneSnapshots } from "../../lambdas/tasks/snapshots.ts";
import { linkProblems, oneFileSnapshot } from "../support/snapshots.ts";

/** An incomplete one left out an altered link. */
const snapshot = (store: MemoryStore, set: string, id: string, takenAt: string, incomplete: boolean) =>
  oneFileSnapshot(store, { set, id, takenAt, ...(incomplete ? { unreadable: linkProblems(1), unreadableCount: 1 } : {}) });
const day = (i: number) => new Date(Date.UTC(2026, 0, 1 + i)).toISOString();

it("keeps only the newest N when every snapshot is incomplete", async () => {
  const store = new MemoryStore();
  for (let i = 0; i < 30; i++) await snapshot(store, "s", `s${String(i).padStart(2, "0")}`, day(i), true);
  const result = await pruneSnapshots(store, "s", { keep: 1 });
  expect(result.kept).toEqual(["s29"]);
  expect(result.deleted).toHaveLength(29);
});

it("keeps the newest N of any kind and the newest N complete ones, at most 2N", async () => {
  const store = new MemoryStore();
  await snapshot(store, "s", "a0-complete", day(0), false);
  await snapshot(store, "s", "a1-complete", day(1), false);
  for (let i = 0; i < 10; i++) await snapshot(store, "s", `b${i}`, day(i + 2), true);
  const one = await pruneSnapshots(store, "s", { keep: 1 });
  expect(one.kept.sort()).toEqual(["a1-complete", "b9"]);
  expect(one.deleted.sort()).toEqual(["a0-complete", "b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8"]);
});

it("keeps an incomplete snapshot inside the protection window whatever keep says", async () => {
  const store = new MemoryStore();
  for (let i = 0; i < 5; i++) await snapshot(store, "s", `s${i}`, day(i), true);
  const result = await pruneSnapshots(store, "s", { keep: 1, protectFrom: new Date(day(2)) });
  expect(result.kept.sort()).toEqual(["s2", "s3", "s4"]);
  expect(result.protected?.sort()).toEqual(["s2", "s3"]);
});
