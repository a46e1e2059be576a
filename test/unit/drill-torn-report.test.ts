// A drill of a torn snapshot warned on the terminal and in --json, but the
// report it sends to the target (what `tidemark status` and the history
// read, and all a scheduled drill leaves) said a plain pass. The report now
// carries how many files were possibly torn.

import { expect, it } from "vitest";
import { runDrill } from "../../agent/drill.ts";
import { DrillReportSchema } from "../../contract/drills.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { oneFileSnapshot } from "../support/snapshots.ts";

async function storeWith(changingWhileRead?: { paths: string[]; count: number }): Promise<MemoryStore> {
  const store = new MemoryStore();
  await oneFileSnapshot(store, { id: "snap", path: "busy.db", content: "pages", ...(changingWhileRead ? { changingWhileRead } : {}) });
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
