// A large file's capture reads it whole, again while it keeps changing (a
// database under writes): on a loaded host that took tens of seconds, and
// status said "in sync" meanwhile, the change being in no journal record and
// the file held by nothing. The journal names the file as held while its
// capture runs.

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

it("names a large file as held while its changed version is captured, and not after", async () => {
  const harness = agentHarness(SET, { coalesceBytes: 4096 });
  h = harness;
  const file = join(harness.src.path, "app.db");
  writeFileSync(file, Buffer.alloc(64 * 1024, 1));
  writeFileSync(join(harness.src.path, "small.txt"), "small");
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);

  const holds: { path: string; reason: string }[] = [];
  const hold = harness.journal.held.hold.bind(harness.journal.held);
  vi.spyOn(harness.journal.held, "hold").mockImplementation((set, row) => {
    holds.push({ path: row.path, reason: row.reason });
    hold(set, row);
  });
  writeFileSync(file, Buffer.alloc(64 * 1024, 2));
  writeFileSync(join(harness.src.path, "small.txt"), "changed");
  harness.agent.hint(SET, "app.db");
  harness.agent.hint(SET, "small.txt");
  await harness.agent.processHints(SET);

  // Named before its capture read it; the small file is not (a journal write per small file would cost its capture).
  expect(holds).toEqual([{ path: "app.db", reason: "its newest version is being captured" }]);
  await harness.agent.drain(SET);
  expect(heldNow(harness.journal.held, SET)).toEqual([]);
  expect(harness.journal.index.entry(SET, "app.db")?.sha256).toBeDefined();
});
