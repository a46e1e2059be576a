// What the stack and the applier must spell alike, held to the one
// definition each: the applier's environment variables (lambdas/environment.ts)
// and the metric names its log lines put and the stack alarms on
// (METRIC in lambdas/applier/metrics.ts).

import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { App } from "aws-cdk-lib";
import { Match, Template } from "aws-cdk-lib/assertions";
import { describe, expect, it } from "vitest";
import type { DrillReport } from "../../contract/drills.ts";
import type { SnapshotSummary } from "../../contract/tasks.ts";
import { drillMetricsLine, METRIC, metricsLine, snapshotCheckMetricsLine } from "../../lambdas/applier/metrics.ts";
import { APPLIER_ENDPOINT_ENV, APPLIER_ENV } from "../../lambdas/environment.ts";
import type { TidemarkSettings } from "../../infra/settings.ts";
import { TidemarkStack } from "../../infra/stack.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Every feature that adds to the applier's environment switched on. */
const EVERYTHING: Partial<TidemarkSettings> = {
  backup: true,
  volumeSnapshots: true,
  ebsKmsKeyArn: "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
  invokeAllowList: ["arn:aws:lambda:us-east-1:123456789012:function:quiesce"],
  hosts: [{ name: "web1", sets: ["www"] }],
  markerSenders: ["arn:aws:iam::123456789012:role/ops"],
  snapshotLockDays: 7,
  snapshotLockMode: "compliance",
};

function template(settings: Partial<TidemarkSettings>): Template {
  const app = new App({ context: { "aws:cdk:bundling-stacks": [] } });
  return Template.fromStack(new TidemarkStack(app, "Tidemark", { settings }));
}

type Resource = { Properties: Record<string, unknown> };

function applierEnvironment(t: Template): string[] {
  // The applier, not the function that looks up tidemark:markerSenders at deploy time (a handler of the same name).
  const functions = Object.values(t.findResources("AWS::Lambda::Function", { Properties: { Description: Match.stringLikeRegexp("^tidemark applier") } })) as Resource[];
  expect(functions).toHaveLength(1);
  const variables = (functions[0]?.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
  return Object.keys(variables).filter((name) => name !== "NODE_OPTIONS");
}

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => relative(root, join(entry.parentPath, entry.name)));
}

describe("the applier's environment", () => {
  it("is exactly APPLIER_ENV when every feature is on, and never an endpoint override", () => {
    expect(applierEnvironment(template(EVERYTHING)).sort()).toEqual(Object.values(APPLIER_ENV).sort());
    const defaults = applierEnvironment(template({}));
    expect(defaults.filter((name) => !Object.values<string>(APPLIER_ENV).includes(name))).toEqual([]);
    expect(defaults.filter((name) => Object.values<string>(APPLIER_ENDPOINT_ENV).includes(name))).toEqual([]);
  });

  it("is read and written through the one definition, never by a name spelled out", () => {
    // env.TIDEMARK_X, env["TIDEMARK_X"], or a TIDEMARK_X: key of an environment map.
    const spelled = /\benv\s*(?:\.\s*|\[\s*["'`])TIDEMARK_|^\s*["']?TIDEMARK_[A-Z_]+["']?\s*:/m;
    const offending = [...sources("lambdas"), ...sources("infra")].filter((file) => file !== "lambdas/environment.ts" && spelled.test(readFileSync(join(root, file), "utf8")));
    expect(offending).toEqual([]);
  });
});

/** The names a metrics log line declares to CloudWatch (embedded metric format), each with its value present. */
function declaredMetrics(line: string): string[] {
  const parsed = JSON.parse(line) as Record<string, unknown> & { _aws: { CloudWatchMetrics: { Metrics: { Name: string }[] }[] } };
  const names = parsed._aws.CloudWatchMetrics.flatMap((m) => m.Metrics.map((metric) => metric.Name));
  for (const name of names) expect(typeof parsed[name], `value of ${name}`).toBe("number");
  return names;
}

describe("the applier's metrics", () => {
  const report: DrillReport = {
    id: "20261130T120000Z-abcdef",
    set: "docs",
    passed: true,
    startedAt: "2026-11-30T12:00:00.000Z",
    finishedAt: "2026-11-30T12:00:01.000Z",
    recoveryPoint: { kind: "snapshot", id: "snap-x", takenAt: "2026-11-30T11:00:00.000Z" },
    rto: { restoreMs: 1, verifyMs: 1, checkMs: 0, totalMs: 2 },
    rpo: { ageMs: 10, lagMs: null },
    entries: 0,
    bytes: 0,
    problems: [],
    problemCount: 0,
    scratch: { path: "/tmp/x", kept: false },
  };
  const snapshot: SnapshotSummary = {
    id: "snap-x",
    set: "docs",
    taskId: "t",
    seq: 1,
    takenAt: "2026-11-30T11:00:00.000Z",
    files: 0,
    dirs: 0,
    symlinks: 0,
    bytes: 0,
    versioned: false,
    manifestSha256: "0".repeat(64),
  };
  const put = [
    ...declaredMetrics(metricsLine({ outcomes: [], lagMs: 0, timestamp: 0 })),
    ...declaredMetrics(drillMetricsLine(report, 0)),
    ...declaredMetrics(snapshotCheckMetricsLine({ set: "docs", snapshot, timestamp: 0 })),
  ];

  it("are the names METRIC holds, each put by some log line", () => {
    expect([...new Set(put)].sort()).toEqual(Object.values(METRIC).sort());
  });

  it("are what every alarm and dashboard graph on the applier's namespace reads", () => {
    const t = template({});
    const alarms = Object.values(t.findResources("AWS::CloudWatch::Alarm")) as Resource[];
    const namespace = "Tidemark/tidemark";
    const alarmed = alarms.filter((a) => a.Properties.Namespace === namespace).map((a) => String(a.Properties.MetricName));
    // SetOutOfSync, SnapshotCheckFailed, DrillFailed and NoRecentDrill read the applier's own metrics.
    expect(alarmed.length).toBeGreaterThanOrEqual(4);
    expect(alarmed.filter((name) => !put.includes(name))).toEqual([]);
    const dashboard = JSON.stringify(Object.values(t.findResources("AWS::CloudWatch::Dashboard"))[0]);
    const graphed = [...dashboard.matchAll(new RegExp(`\\\\"${namespace.replace("/", "\\/")}\\\\",\\\\"(\\w+)\\\\"`, "g"))].map((m) => m[1] ?? "");
    expect(graphed.length).toBeGreaterThan(0);
    expect(graphed.filter((name) => !put.includes(name))).toEqual([]);
  });
});
