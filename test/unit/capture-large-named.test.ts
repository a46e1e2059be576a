// A large file's capture reads it whole, again while it keeps changing (a
// database under writes): on a loaded host that took tens of seconds, and
// status said "in sync" meanwhile, the change being in no journal record and
// the file held by nothing. The journal names the file as held while its
// capture runs, also when the index did not know it as large (new to the set,
// or a small one grown large: only the index's old size counted before).

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { heldNow } from "../../agent/held-files.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "db";
const REASON = "its newest version is being captured";
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
  vi.restoreAllMocks();
});

/** A harness whose set first holds `before` (path → content), mirrored; then every hold the journal takes is recorded. */
async function heldDuringCapture(before: Record<string, string | Buffer>): Promise<{ harness: Harness; holds: { path: string; reason: string }[] }> {
  const harness = agentHarness(SET, { coalesceBytes: 4096 });
  h = harness;
  for (const [path, content] of Object.entries(before)) writeFileSync(join(harness.src.path, path), content);
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  const holds: { path: string; reason: string }[] = [];
  const hold = harness.journal.held.hold.bind(harness.journal.held);
  vi.spyOn(harness.journal.held, "hold").mockImplementation((set, row) => {
    holds.push({ path: row.path, reason: row.reason });
    hold(set, row);
  });
  return { harness, holds };
}

/** Writes each file and lets the agent capture the watcher's hints of them. */
async function change(harness: Harness, files: Record<string, string | Buffer>): Promise<void> {
  for (const [path, content] of Object.entries(files)) writeFileSync(join(harness.src.path, path), content);
  for (const path of Object.keys(files)) harness.agent.hint(SET, path);
  await harness.agent.processHints(SET);
}

it("names a large file as held while its changed version is captured, and not after", async () => {
  const { harness, holds } = await heldDuringCapture({ "app.db": Buffer.alloc(64 * 1024, 1), "small.txt": "small" });
  await change(harness, { "app.db": Buffer.alloc(64 * 1024, 2), "small.txt": "changed" });

  // Named before its capture read it; the small file is not (a journal write per small file would cost its capture).
  expect(holds).toEqual([{ path: "app.db", reason: REASON }]);
  await harness.agent.drain(SET);
  expect(heldNow(harness.journal.held, SET)).toEqual([]);
  expect(harness.journal.index.entry(SET, "app.db")?.sha256).toBeDefined();
});

it("names a new large file and a small file grown large as held while they are captured", async () => {
  const { harness, holds } = await heldDuringCapture({ "grows.db": "small", "small.txt": "small" });
  await change(harness, { "new.db": Buffer.alloc(64 * 1024, 1), "grows.db": Buffer.alloc(64 * 1024, 2), "small.txt": "changed" });

  expect(holds).toEqual([
    { path: "grows.db", reason: REASON },
    { path: "new.db", reason: REASON },
  ]);
  await harness.agent.drain(SET);
  expect(heldNow(harness.journal.held, SET)).toEqual([]);
  expect(harness.journal.index.entry(SET, "new.db")?.size).toBe(64 * 1024);
  expect(harness.journal.index.entry(SET, "grows.db")?.size).toBe(64 * 1024);
});
