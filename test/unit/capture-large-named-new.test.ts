// A large file is named as held while its capture runs even when the index
// did not know it as large: one new to the set, or a small one grown large.
// Before, only the index's old size counted, and status said "in sync" during
// the whole long capture of such a file.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { heldNow } from "../../agent/held-files.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "db";
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  vi.restoreAllMocks();
});

it("names a new large file and a small file grown large as held while they are captured", async () => {
  const harness = agentHarness(SET, { coalesceBytes: 4096 });
  h = harness;
  writeFileSync(join(harness.src.path, "grows.db"), "small");
  writeFileSync(join(harness.src.path, "small.txt"), "small");
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);

  const holds: { path: string; reason: string }[] = [];
  const hold = harness.journal.held.hold.bind(harness.journal.held);
  vi.spyOn(harness.journal.held, "hold").mockImplementation((set, row) => {
    holds.push({ path: row.path, reason: row.reason });
    hold(set, row);
  });
  writeFileSync(join(harness.src.path, "new.db"), Buffer.alloc(64 * 1024, 1));
  writeFileSync(join(harness.src.path, "grows.db"), Buffer.alloc(64 * 1024, 2));
  writeFileSync(join(harness.src.path, "small.txt"), "changed");
  for (const path of ["grows.db", "new.db", "small.txt"]) harness.agent.hint(SET, path);
  await harness.agent.processHints(SET);

  const reason = "its newest version is being captured";
  expect(holds).toEqual([
    { path: "grows.db", reason },
    { path: "new.db", reason },
  ]);
  await harness.agent.drain(SET);
  expect(heldNow(harness.journal.held, SET)).toEqual([]);
  expect(harness.journal.index.entry(SET, "new.db")?.size).toBe(64 * 1024);
  expect(harness.journal.index.entry(SET, "grows.db")?.size).toBe(64 * 1024);
});
