// A first mirror of a large tree: the sender drains what the scan journaled
// so far while the scan goes on, and `tidemark status` said "in sync" with a
// fraction of the tree on the target (1,519 of 13,093 entries, minutes
// before the scan ended). While the start scan runs, the set is catching up.

import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { scanNow } from "../../agent/held-files.ts";
import { caughtUp, findProblems, type SetFacts } from "../../agent/set-health.ts";
import { initialStatus } from "../../contract/layout.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "nm";
let h: Harness | undefined;
afterEach(() => h?.close());

it("status does not call a set caught up while the agent's start scan is still journaling the tree", async () => {
  const harness = agentHarness(SET);
  h = harness;
  for (let i = 0; i < 20; i++) writeFileSync(join(harness.src.path, `f${i}.js`), `module.exports = ${i};`);
  const facts = async (): Promise<SetFacts> => ({
    set: SET,
    counters: harness.journal.sets.counters(SET),
    generation: harness.journal.sets.knownGeneration(SET),
    target: { status: await readSetStatus(harness.store, SET) },
    now: new Date(),
    scanning: scanNow(harness.journal.held, SET),
  });
  // What status would say at the scan's first transaction, once the target applied everything journaled so far.
  const midScan: SetFacts[] = [];
  const append = harness.journal.append.bind(harness.journal);
  const spy = vi.spyOn(harness.journal, "append").mockImplementation((set, changes) => {
    const seqs = append(set, changes);
    if (midScan.length === 0) midScan.push({ set: SET, counters: { ...harness.journal.sets.counters(SET), backlogRecords: 0 }, generation: undefined, target: { status: { ...initialStatus(SET), lastSeq: harness.journal.sets.counters(SET).nextSeq - 1 } }, now: new Date(), scanning: scanNow(harness.journal.held, SET) });
    return seqs;
  });
  try {
    await harness.agent.start();
  } finally {
    spy.mockRestore();
  }
  expect(midScan).toHaveLength(1);
  expect(midScan[0]?.scanning?.since).toMatch(/^\d{4}-\d\d-\d\dT/);
  expect(caughtUp(midScan[0] as SetFacts)).toBe(false);
  expect(findProblems(midScan[0] as SetFacts)).toEqual([]);

  // The scan is over: once the target applied it all, the set is caught up.
  expect(scanNow(harness.journal.held, SET)).toBeNull();
  await harness.agent.drain(SET);
  expect(caughtUp(await facts())).toBe(true);
});

it("status does not call a set caught up while a folder moved into it is still being journaled", async () => {
  const harness = agentHarness(SET);
  h = harness;
  await harness.agent.start();
  await harness.agent.drain(SET);
  // A tree moved in whole: the watcher sees one new folder, and the agent scans what it holds.
  const outside = join(harness.src.path, "..", `moved-in-${process.pid}`);
  mkdirSync(outside, { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(outside, `f${i}.js`), `module.exports = ${i};`);
  renameSync(outside, join(harness.src.path, "vendor"));
  let midScan: ReturnType<typeof scanNow> | undefined;
  const append = harness.journal.append.bind(harness.journal);
  const spy = vi.spyOn(harness.journal, "append").mockImplementation((set, changes) => {
    midScan ??= scanNow(harness.journal.held, SET);
    return append(set, changes);
  });
  try {
    harness.agent.hint(SET, "vendor");
    await harness.agent.processHints(SET);
  } finally {
    spy.mockRestore();
  }
  expect(midScan?.since).toMatch(/^\d{4}-\d\d-\d\dT/);
  expect(scanNow(harness.journal.held, SET)).toBeNull();
});

it("status does not call a set caught up while a verification's scan is journaling what it finds", async () => {
  const harness = agentHarness(SET);
  h = harness;
  await harness.agent.start();
  await harness.agent.drain(SET);
  writeFileSync(join(harness.src.path, "unwatched.js"), "module.exports = 'seen by the scan';");
  let midScan: ReturnType<typeof scanNow> | undefined;
  const append = harness.journal.append.bind(harness.journal);
  const spy = vi.spyOn(harness.journal, "append").mockImplementation((set, changes) => {
    midScan ??= scanNow(harness.journal.held, SET);
    return append(set, changes);
  });
  try {
    await harness.agent.journalVerify(SET, { deep: false, orphans: "report" });
  } finally {
    spy.mockRestore();
  }
  expect(midScan?.since).toMatch(/^\d{4}-\d\d-\d\dT/);
  expect(scanNow(harness.journal.held, SET)).toBeNull();
});
