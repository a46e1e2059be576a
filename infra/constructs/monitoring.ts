// Alarms an operator needs (replication falling behind, messages given up on,
// the applier failing, a set out of sync) and one dashboard with the stream.

import { Duration } from "aws-cdk-lib";
import { Alarm, ComparisonOperator, Dashboard, GraphWidget, type IMetric, Metric, SingleValueWidget, TreatMissingData } from "aws-cdk-lib/aws-cloudwatch";
import { SnsAction } from "aws-cdk-lib/aws-cloudwatch-actions";
import type { IFunction } from "aws-cdk-lib/aws-lambda";
import { Topic } from "aws-cdk-lib/aws-sns";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { METRIC } from "../../lambdas/applier/metrics.ts";

export interface MonitoringProps {
  readonly dashboardName: string;
  readonly queue: IQueue;
  readonly deadLetterQueue: IQueue;
  readonly applier: IFunction;
  /** Namespace of the applier's embedded metrics (RecordsApplied, BytesApplied, MessagesRejected, SetsOutOfSync, ReplicationLag, SnapshotChecksFailed). */
  readonly metricsNamespace: string;
  /**
   * Alarm when the oldest message is older than this.
   * @default 5 minutes
   */
  readonly maxMessageAge?: Duration;
  /**
   * Alarm when no drill passed within this many hours (1-168); 0: no such alarm.
   * @default 48
   */
  readonly drillMaxAgeHours?: number;
  /**
   * SNS topic the alarms notify, on alarm and on recovery.
   * @default none
   */
  readonly alarmTopicArn?: string;
}

export class Monitoring extends Construct {
  readonly replicationLagAlarm: Alarm;
  readonly deadLetterAlarm: Alarm;
  readonly applierErrorsAlarm: Alarm;
  readonly outOfSyncAlarm: Alarm;
  readonly drillFailedAlarm: Alarm;
  /** Absent when drillMaxAgeHours is 0. */
  readonly noRecentDrillAlarm?: Alarm;
  /** A snapshot failed its digest or its verification: that recovery point cannot be relied on. */
  readonly snapshotCheckAlarm: Alarm;
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: MonitoringProps) {
    super(scope, id);
    const minute = Duration.minutes(1);
    const applied = (name: string, statistic = "Sum") => new Metric({ namespace: props.metricsNamespace, metricName: name, statistic, period: minute });
    const oldest = props.queue.metricApproximateAgeOfOldestMessage({ period: minute, statistic: "Maximum" });
    const dead = props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: minute, statistic: "Maximum" });
    const errors = props.applier.metricErrors({ period: minute, statistic: "Sum" });
    const outOfSync = applied(METRIC.setsOutOfSync, "Maximum");
    const maxAge = (props.maxMessageAge ?? Duration.minutes(5)).toSeconds();

    const alarm = (name: string, metric: IMetric, threshold: number, description: string, evaluationPeriods = 1) =>
      new Alarm(this, name, {
        metric,
        threshold,
        evaluationPeriods,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      });
    this.replicationLagAlarm = alarm(
      "ReplicationLag",
      oldest,
      maxAge,
      `The oldest change waiting in the replication queue is over ${maxAge} s old: the applier is not keeping up or is failing.`,
      3,
    );
    this.deadLetterAlarm = alarm(
      "DeadLetters",
      dead,
      1,
      "Messages reached the dead-letter queue: their set stops at that point until they are redriven or the set is resynced.",
    );
    this.applierErrorsAlarm = alarm("ApplierErrors", errors, 1, "The applier failed invocations; see its log group.");
    this.outOfSyncAlarm = alarm(
      "SetOutOfSync",
      outOfSync,
      1,
      "A set is out of sync on the target (a seq gap or a diverged target); `tidemark status` names it, and the agent resyncs it.",
    );
    const snapshotChecks = applied(METRIC.snapshotChecksFailed);
    this.snapshotCheckAlarm = alarm(
      "SnapshotCheckFailed",
      snapshotChecks,
      1,
      "A snapshot differs from what the source held at its marker, or its content is missing or damaged in the bucket: that recovery point cannot be relied on. Or it holds files that kept changing while its marker read them (an application not quiesced): those files are possibly torn. `tidemark snapshots SET --json` names the paths.",
    );

    this.drillFailedAlarm = alarm(
      "DrillFailed",
      applied(METRIC.drillFailed),
      1,
      "A recovery drill failed: a recovery point did not restore as recorded. Its report under drills/<set>/ names every bad path.",
    );
    const drillHours = props.drillMaxAgeHours ?? 48;
    if (drillHours > 0) {
      // One datapoint an hour, missing ones breaching: in alarm when none of the last N hours had a drill that passed.
      this.noRecentDrillAlarm = new Alarm(this, "NoRecentDrill", {
        metric: new Metric({ namespace: props.metricsNamespace, metricName: METRIC.drillPassed, statistic: "Sum", period: Duration.hours(1) }),
        threshold: 1,
        evaluationPeriods: drillHours,
        datapointsToAlarm: drillHours,
        comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.BREACHING,
        alarmDescription: `No recovery drill passed in the last ${drillHours} hours: run \`tidemark drill SET\`, or schedule drills in the agent config ("drills").`,
      });
    }

    if (props.alarmTopicArn) {
      const action = new SnsAction(Topic.fromTopicArn(this, "AlarmTopic", props.alarmTopicArn));
      const drillAlarms = [this.drillFailedAlarm, ...(this.noRecentDrillAlarm ? [this.noRecentDrillAlarm] : [])];
      for (const a of [this.replicationLagAlarm, this.deadLetterAlarm, this.applierErrorsAlarm, this.outOfSyncAlarm, this.snapshotCheckAlarm, ...drillAlarms]) {
        a.addAlarmAction(action);
        a.addOkAction(action);
      }
    }

    this.dashboard = new Dashboard(this, "Dashboard", { dashboardName: props.dashboardName });
    this.dashboard.addWidgets(
      new GraphWidget({
        title: "Replication lag",
        left: [oldest],
        right: [applied(METRIC.replicationLag, "Maximum")],
        leftYAxis: { label: "oldest message waiting (s)", showUnits: false },
        rightYAxis: { label: "oldest message applied (ms)", showUnits: false },
        width: 12,
      }),
      new GraphWidget({
        title: "Queue depth",
        left: [props.queue.metricApproximateNumberOfMessagesVisible({ period: minute }), props.queue.metricApproximateNumberOfMessagesNotVisible({ period: minute })],
        right: [dead],
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new GraphWidget({ title: "Records applied", left: [applied(METRIC.recordsApplied)], right: [applied(METRIC.bytesApplied)], width: 12 }),
      new GraphWidget({
        title: "Applier",
        left: [props.applier.metricInvocations({ period: minute }), errors],
        right: [props.applier.metricDuration({ period: minute, statistic: "p99" })],
        width: 12,
      }),
    );
    this.dashboard.addWidgets(
      new SingleValueWidget({ title: "Sets out of sync", metrics: [outOfSync], width: 6 }),
      new SingleValueWidget({ title: "Messages rejected", metrics: [applied(METRIC.messagesRejected)], width: 6 }),
      new SingleValueWidget({ title: "Dead letters", metrics: [dead], width: 6 }),
      new SingleValueWidget({ title: "Drills passed / failed (24 h)", metrics: [applied(METRIC.drillPassed), applied(METRIC.drillFailed)].map((m) => m.with({ period: Duration.days(1) })), width: 6 }),
      new SingleValueWidget({ title: "Snapshot checks failed", metrics: [snapshotChecks], width: 6 }),
    );
  }
}
