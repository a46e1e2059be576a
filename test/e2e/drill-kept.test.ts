// A drill report kept in the state folder (no agent took it in time:
// drill-kept.ts) reaches drills/<set>/<id>.json once `tidemark run` starts,
// and with the next report a running agent is given, and `tidemark drill
// --json` says where its report went.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { keepDrillReport, keptDrillReports } from "../../agent/drill-kept.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent } from "../../agent/runtime.ts";
import { DrillReportSchema } from "../../contract/drills.ts";
import { drillReportKey } from "../../contract/layout.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
const work = tempDir();
let config: string;

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(join(work.path, "src"), { recursive: true });
  writeFileSync(join(work.path, "src/a.txt"), "alpha");
  config = cloud.writeConfig(work.path, [{ name: "web", path: "src" }]);
  const task = await tidemark(["task", "web", "--wait", "--json", "--config", config]);
  expect(task.code, task.stderr).toBe(0);
});

afterAll(async () => {
  await cloud?.stop();
  work.remove();
});

it("`tidemark drill --json` says its report was journaled; a report kept in the state folder reaches the target once `tidemark run` starts", async () => {
  const drill = await tidemark(["drill", "web", "--json", "--config", config]);
  expect(drill.code, drill.stderr).toBe(0);
  const printed = JSON.parse(drill.stdout) as { delivery: unknown };
  expect(printed.delivery).toEqual({ state: "journaled" });
  const report = DrillReportSchema.parse(printed);
  await eventually(async () => expect(await cloud.store.get(drillReportKey("web", report.id))).toBeDefined());

  // The same drill as if no agent had taken its report: kept, under another id.
  const stateDir = loadConfig(config).stateDir;
  const kept = { ...report, id: `${report.id}-kept` };
  keepDrillReport(stateDir, kept);
  const running = await startAgent(loadConfig(config), silentLogger);
  try {
    await eventually(async () => expect(await cloud.store.get(drillReportKey("web", kept.id))).toBeDefined());
    expect(keptDrillReports(stateDir)).toEqual([]);
    // One kept while it runs (its request did not reach it): the next drill report it is given takes it along.
    const later = { ...report, id: `${report.id}-later` };
    keepDrillReport(stateDir, later);
    const next = await tidemark(["drill", "web", "--json", "--config", config]);
    expect(next.code, next.stderr).toBe(0);
    const nextId = DrillReportSchema.parse(JSON.parse(next.stdout)).id;
    await eventually(async () => expect(await cloud.store.get(drillReportKey("web", nextId))).toBeDefined());
    await eventually(async () => expect(await cloud.store.get(drillReportKey("web", later.id))).toBeDefined());
    expect(keptDrillReports(stateDir)).toEqual([]);
  } finally {
    await running.stop();
  }
});

it("a report kept while `tidemark run` runs, with no drill after it, reaches the target by the agent's own sweep", async () => {
  const stateDir = loadConfig(config).stateDir;
  const running = await startAgent(loadConfig(config), silentLogger, { keptSweepMs: 200 });
  try {
    const drill = await tidemark(["drill", "web", "--json", "--config", config]);
    expect(drill.code, drill.stderr).toBe(0);
    // As if the running agent's journal had refused this one when the drill gave it: kept, and no drill follows.
    const kept = { ...DrillReportSchema.parse(JSON.parse(drill.stdout)), id: "20261201T050000Z-swept0" };
    keepDrillReport(stateDir, kept);
    await eventually(async () => expect(await cloud.store.get(drillReportKey("web", kept.id))).toBeDefined(), 20_000);
    expect(keptDrillReports(stateDir)).toEqual([]);
  } finally {
    await running.stop();
  }
});
