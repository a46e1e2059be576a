// A drill of a snapshot that left out more entries than its summary names (it names the first 100): every left-out
// entry counts in the report, not only the named ones (101 left out were reported as 100 bad paths).
import { createHash } from "node:crypto";
import { expect, it } from "vitest";
import { runDrill } from "../../agent/drill.ts";
import { preservedKey } from "../../contract/layout.ts";
import type { SnapshotEntry } from "../../contract/tasks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { writeSnapshot } from "../../lambdas/tasks/snapshots.ts";

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

async function snapshotLeavingOut(count: number, named: number): Promise<MemoryStore> {
  const store = new MemoryStore();
  const content = "kept";
  const entry: SnapshotEntry = { path: "kept.txt", kind: "file", size: content.length, mode: 0o644, mtimeNs: "1700000000000000000", sha256: sha(content) };
  await store.put(preservedKey("s", sha(content)), Buffer.from(content));
  const unreadable = Array.from({ length: named }, (_, i) => ({ path: `link${String(i).padStart(3, "0")}`, problem: "altered" }));
  await writeSnapshot(store, { id: "big", set: "s", taskId: "t", seq: 1, takenAt: "2026-01-01T00:00:00.000Z", files: 1, dirs: 0, symlinks: 0, bytes: 4, versioned: false, unreadable, unreadableCount: count }, [entry]);
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
