// A drill of a snapshot that left out more entries than its summary names (it names the first 100): every left-out
// entry counts in the report, not only the named ones (101 left out were reported as 100 bad paths).
import { expect, it } from "vitest";
import { runDrill } from "../../agent/drill.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { linkProblems, oneFileSnapshot } from "../support/snapshots.ts";

async function snapshotLeavingOut(count: number, named: number): Promise<MemoryStore> {
  const store = new MemoryStore();
  await oneFileSnapshot(store, { id: "big", path: "kept.txt", content: "kept", unreadable: linkProblems(named), unreadableCount: count });
  return store;
}

it("counts every entry the snapshot left out, named or not", async () => {
  const { report, problems, leftOutUnnamed } = await runDrill(await snapshotLeavingOut(101, 100), "s", { snapshot: "big" });
  expect(problems).toHaveLength(100);
  expect(leftOutUnnamed).toBe(1);
  expect(report).toMatchObject({ passed: false, problemCount: 101, entries: 1 });
});

it("counts the named ones alone when the summary names them all", async () => {
  const { report, leftOutUnnamed } = await runDrill(await snapshotLeavingOut(100, 100), "s", { snapshot: "big" });
  expect(leftOutUnnamed).toBeUndefined();
  expect(report).toMatchObject({ passed: false, problemCount: 100 });
});
