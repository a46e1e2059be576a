// A drill report kept in the state folder can reach the target days after the drill (agent/drill-kept.ts). Its
// DrillPassed must count at the drill's end, or a passed drill 47 h old would silence "no drill passed in 48 h"
// for another 48 h; a failed one counts when the target learns of it, so its alarm fires.

import { expect, it } from "vitest";
import { drillMetricsLine, METRIC_MAX_AGE_MS } from "../../lambdas/applier/metrics.ts";
import type { DrillReport } from "../../contract/drills.ts";

const NOW = Date.parse("2026-12-03T04:00:00.000Z");
const HOUR = 3_600_000;

function report(passed: boolean, finishedAt: number): DrillReport {
  return {
    id: "20261201T050000Z-aaaaaa",
    set: "db",
    passed,
    startedAt: new Date(finishedAt - 1000).toISOString(),
    finishedAt: new Date(finishedAt).toISOString(),
    recoveryPoint: { kind: "snapshot", id: "snap-1", takenAt: "2026-12-01T03:59:00.000Z" },
    rto: { restoreMs: 1, verifyMs: 1, checkMs: 0, totalMs: 2 },
    rpo: { ageMs: 60_000, lagMs: null },
    entries: 3,
    bytes: 10,
    problems: [],
    problemCount: 0,
    scratch: { path: "/tmp/x", kept: false },
  };
}

const line = (r: DrillReport) => JSON.parse(drillMetricsLine(r, NOW, "Tidemark/test")) as { _aws?: { Timestamp: number }; DrillPassed?: number; DrillFailed?: number; metrics?: string };

it("a passed drill sent late counts at its end, not at its arrival", () => {
  const finished = NOW - 47 * HOUR;
  expect(line(report(true, finished))).toMatchObject({ _aws: { Timestamp: finished }, DrillPassed: 1 });
});

it("a failed drill sent late counts now, when the target learns of it (its alarm fires)", () => {
  expect(line(report(false, NOW - 47 * HOUR))).toMatchObject({ _aws: { Timestamp: NOW }, DrillFailed: 1 });
});

it("a drill that ends in the future of the target's clock counts now", () => {
  expect(line(report(true, NOW + HOUR))._aws?.Timestamp).toBe(NOW);
});

it("a passed drill older than CloudWatch takes is logged without its metrics", () => {
  const old = line(report(true, NOW - METRIC_MAX_AGE_MS - HOUR));
  expect(old._aws).toBeUndefined();
  expect(old.DrillPassed).toBeUndefined();
  expect(old.metrics).toContain("not counted");
  expect(line(report(true, NOW - METRIC_MAX_AGE_MS + HOUR))._aws?.Timestamp).toBe(NOW - METRIC_MAX_AGE_MS + HOUR);
});
