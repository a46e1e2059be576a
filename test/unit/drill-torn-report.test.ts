// A drill of a torn snapshot warned on the terminal and in --json, but the
// report it sends to the target (what `tidemark status` and the history
// read, and all a scheduled drill leaves) said a plain pass. The report now
// carries how many files were possibly torn.

import { createHash } from "node:crypto";
import { expect, it } from "vitest";
import { runDrill } from "../../agent/drill.ts";
import { DrillReportSchema } from "../../contract/drills.ts";
import { preservedKey } from "../../contract/layout.ts";
import type { SnapshotEntry } from "../../contract/tasks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { writeSnapshot } from "../../lambdas/tasks/snapshots.ts";

const sha = (text: string) => createHash("sha256").update(text).digest("hex");

async function storeWith(changingWhileRead?: { paths: string[]; count: number }): Promise<MemoryStore> {
  const store = new MemoryStore();
  const content = "pages";
  const entry: SnapshotEntry = { path: "busy.db", kind: "file", size: content.length, mode: 0o644, mtimeNs: "1700000000000000000", sha256: sha(content) };
  await store.put(preservedKey("s", sha(content)), Buffer.from(content));
  await writeSnapshot(
    store,
    { id: "snap", set: "s", taskId: "t", seq: 1, takenAt: "2026-01-01T00:00:00.000Z", files: 1, dirs: 0, symlinks: 0, bytes: 5, versioned: false, ...(changingWhileRead ? { changingWhileRead } : {}) },
    [entry],
  );
  return store;
}

it("puts the count of possibly torn files in the report it sends, which the wire keeps", async () => {
  const outcome = await runDrill(await storeWith({ paths: ["busy.db"], count: 3 }), "s", { snapshot: "snap" });
  expect(outcome.report.passed).toBe(true);
  expect(outcome.report.tornCount).toBe(3);
  expect(DrillReportSchema.parse(JSON.parse(JSON.stringify(outcome.report))).tornCount).toBe(3);
});

it("leaves it out for a snapshot nothing changed in while read", async () => {
  const outcome = await runDrill(await storeWith(), "s", { snapshot: "snap" });
  expect(outcome.report.passed).toBe(true);
  expect("tornCount" in outcome.report).toBe(false);
});
