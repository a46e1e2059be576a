// One structured log line per batch, which CloudWatch also reads as metrics
// (embedded metric format): no API call from the function.

import type { DrillReport } from "../../contract/drills.ts";
import type { MessageOutcome } from "./applier.ts";
import type { SnapshotSummary } from "../../contract/tasks.ts";

/** The namespace when the deployment sets none (TIDEMARK_METRICS_NAMESPACE). */
export const DEFAULT_METRICS_NAMESPACE = "Tidemark";

/** The metrics the applier puts, by the names the stack's alarms and dashboard read (infra/constructs/monitoring.ts). */
export const METRIC = {
  recordsApplied: "RecordsApplied",
  bytesApplied: "BytesApplied",
  messagesRejected: "MessagesRejected",
  setsOutOfSync: "SetsOutOfSync",
  replicationLag: "ReplicationLag",
  drillPassed: "DrillPassed",
  drillFailed: "DrillFailed",
  drillRecoveryTime: "DrillRecoveryTime",
  snapshotChecksFailed: "SnapshotChecksFailed",
} as const;

export interface BatchSummary {
  readonly outcomes: readonly MessageOutcome[];
  /** Age of the oldest message of the batch when it was handled: replication lag. */
  readonly lagMs: number;
  readonly timestamp: number;
  readonly namespace?: string;
}

export function metricsLine(summary: BatchSummary): string {
  let records = 0;
  let bytes = 0;
  let rejected = 0;
  let outOfSync = 0;
  const sets = new Set<string>();
  for (const outcome of summary.outcomes) {
    if (outcome.set !== undefined) sets.add(outcome.set);
    if (outcome.kind === "applied") {
      records += outcome.records;
      bytes += outcome.bytes;
    } else if (outcome.kind === "rejected") rejected += 1;
    else if (outcome.kind === "gap" || outcome.kind === "held") outOfSync = 1;
  }
  return JSON.stringify({
    level: rejected > 0 || outOfSync > 0 ? "warn" : "info",
    msg: "batch handled",
    messages: summary.outcomes.length,
    sets: [...sets].sort(),
    outcomes: summary.outcomes.map((o) => o.kind),
    _aws: {
      Timestamp: summary.timestamp,
      CloudWatchMetrics: [
        {
          Namespace: summary.namespace ?? DEFAULT_METRICS_NAMESPACE,
          Dimensions: [[]],
          Metrics: [
            { Name: METRIC.recordsApplied, Unit: "Count" },
            { Name: METRIC.bytesApplied, Unit: "Bytes" },
            { Name: METRIC.messagesRejected, Unit: "Count" },
            { Name: METRIC.setsOutOfSync, Unit: "Count" },
            { Name: METRIC.replicationLag, Unit: "Milliseconds" },
          ],
        },
      ],
    },
    [METRIC.recordsApplied]: records,
    [METRIC.bytesApplied]: bytes,
    [METRIC.messagesRejected]: rejected,
    [METRIC.setsOutOfSync]: outOfSync,
    [METRIC.replicationLag]: summary.lagMs,
  });
}

/** How far back CloudWatch takes a metric's timestamp (two weeks), less an hour's margin for the log's delivery. */
export const METRIC_MAX_AGE_MS = 14 * 86_400_000 - 3_600_000;

/**
 * One line per drill report the applier writes: DrillPassed or DrillFailed, which the stack alarms on. A passed drill
 * counts at its end (`finishedAt`), not when its report arrived: a report kept in the state folder for days and sent
 * late (agent/drill-kept.ts) is no recent drill, and must not silence "no drill passed in N hours". A failed one
 * counts now, when the target learns of it, so its alarm fires. A passed drill older than CloudWatch takes is logged
 * without its metrics. `now` in ms.
 */
export function drillMetricsLine(report: DrillReport, now: number, namespace?: string): string {
  const fields = { level: report.passed ? "info" : "warn", msg: "drill report", set: report.set, drill: report.id, passed: report.passed, problems: report.problemCount };
  const finished = Date.parse(report.finishedAt);
  const timestamp = report.passed && Number.isFinite(finished) ? Math.min(finished, now) : now;
  if (now - timestamp > METRIC_MAX_AGE_MS) {
    return JSON.stringify({ ...fields, finishedAt: report.finishedAt, metrics: "not counted: the drill finished longer ago than CloudWatch takes a metric's time" });
  }
  return JSON.stringify({
    ...fields,
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [
        {
          Namespace: namespace ?? DEFAULT_METRICS_NAMESPACE,
          Dimensions: [[]],
          Metrics: [
            { Name: METRIC.drillPassed, Unit: "Count" },
            { Name: METRIC.drillFailed, Unit: "Count" },
            { Name: METRIC.drillRecoveryTime, Unit: "Milliseconds" },
          ],
        },
      ],
    },
    [METRIC.drillPassed]: report.passed ? 1 : 0,
    [METRIC.drillFailed]: report.passed ? 0 : 1,
    [METRIC.drillRecoveryTime]: report.rto.totalMs,
  });
}

/** The metric a snapshot that failed its digest or its verification puts (the stack alarms on it). */
export const SNAPSHOT_CHECKS_FAILED_METRIC = METRIC.snapshotChecksFailed;

/** One log line, read by CloudWatch as the metric SnapshotChecksFailed = 1, naming the set and the snapshot. */
export function snapshotCheckMetricsLine(failure: { set: string; snapshot: SnapshotSummary; timestamp: number; namespace?: string }): string {
  const { snapshot } = failure;
  return JSON.stringify({
    level: "error",
    msg: "snapshot check failed",
    set: failure.set,
    snapshot: snapshot.id,
    digest: snapshot.digest?.status,
    verification: snapshot.verification?.status,
    ...(snapshot.changingWhileRead ? { changingWhileRead: snapshot.changingWhileRead.count } : {}),
    ...(snapshot.notReplicated ? { notReplicated: snapshot.notReplicated.count } : {}),
    _aws: {
      Timestamp: failure.timestamp,
      CloudWatchMetrics: [{ Namespace: failure.namespace ?? DEFAULT_METRICS_NAMESPACE, Dimensions: [[]], Metrics: [{ Name: SNAPSHOT_CHECKS_FAILED_METRIC, Unit: "Count" }] }],
    },
    [SNAPSHOT_CHECKS_FAILED_METRIC]: 1,
  });
}
