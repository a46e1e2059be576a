// The target side of tidemark in one stack: the constructs assembled, and the
// outputs an agent is configured from (`tidemark init --cdk-outputs`).

import { CfnOutput, Duration, Stack, type StackProps } from "aws-cdk-lib";
import type { CfnFunction } from "aws-cdk-lib/aws-lambda";
import type { Construct } from "constructs";
import { hostRoleOutput, STACK_OUTPUT } from "../contract/stack-outputs.ts";
import { APPLIER_ENV } from "../lambdas/environment.ts";
import { AgentAccess } from "./constructs/agent-access.ts";
import { HostRoles } from "./constructs/host-roles.ts";
import { MarkerSenders } from "./constructs/marker-senders.ts";
import { Applier } from "./constructs/applier.ts";
import { Monitoring } from "./constructs/monitoring.ts";
import { ReplicationQueue } from "./constructs/replication-queue.ts";
import { TargetBucket } from "./constructs/target-bucket.ts";
import { TaskActions } from "./constructs/task-actions.ts";
import { checkEnvironmentSize } from "./environment-size.ts";
import { parseSettings, type TidemarkSettings } from "./settings.ts";

export interface TidemarkStackProps extends StackProps {
  /**
   * The stack's settings (see infra/settings.ts for each one's default).
   * @default all defaults
   */
  readonly settings?: Partial<TidemarkSettings>;
}

export class TidemarkStack extends Stack {
  readonly settings: TidemarkSettings;
  readonly replication: ReplicationQueue;
  readonly target: TargetBucket;
  readonly actions: TaskActions;
  readonly applier: Applier;
  readonly agentAccess: AgentAccess;
  readonly hostRoles: HostRoles;
  /** Present only with `tidemark:markerSenders`. */
  readonly markerSenders?: MarkerSenders;
  readonly monitoring: Monitoring;

  constructor(scope: Construct, id: string, props: TidemarkStackProps = {}) {
    super(scope, id, props);
    const settings = parseSettings({ ...props.settings });
    this.settings = settings;
    const applierTimeout = Duration.seconds(settings.applierTimeoutSeconds);
    const metricsNamespace = `Tidemark/${settings.namePrefix}`;

    this.replication = new ReplicationQueue(this, "Replication", {
      queueName: settings.namePrefix,
      consumerTimeout: applierTimeout,
      maxReceiveCount: settings.maxReceiveCount,
    });
    this.target = new TargetBucket(this, "Target", {
      noncurrentVersionDays: settings.noncurrentVersionDays,
      retainData: settings.retainData,
      ...(settings.immutableDays > 0 ? { objectLock: { days: settings.immutableDays, mode: settings.immutableMode } } : {}),
    });
    this.actions = new TaskActions(this, "TaskActions", {
      namePrefix: settings.namePrefix,
      enabled: settings.tasksEnabled,
      invokeAllowList: settings.invokeAllowList,
      backup: settings.backup,
      volumeSnapshots: settings.volumeSnapshots,
      ...(settings.ebsKmsKeyArn ? { ebsKmsKeyArn: settings.ebsKmsKeyArn } : {}),
      snapshotRetentionDays: settings.snapshotRetentionDays,
      ...(settings.snapshotLockDays > 0 ? { snapshotLock: { days: settings.snapshotLockDays, mode: settings.snapshotLockMode } } : {}),
    });
    this.hostRoles = new HostRoles(this, "HostRoles", {
      hosts: settings.hosts,
      queue: this.replication.queue,
      bucket: this.target.bucket,
      eventBus: this.actions.eventBus,
      readVolumeSnapshots: settings.volumeSnapshots,
      ...(settings.agentRoleTrust ? { defaultTrust: settings.agentRoleTrust } : {}),
    });
    if (settings.markerSenders) {
      this.markerSenders = new MarkerSenders(this, "MarkerSenders", {
        senders: settings.markerSenders,
        queue: this.replication.queue,
        ...(settings.markerSendersRefresh ? { refresh: settings.markerSendersRefresh } : {}),
      });
    }
    this.applier = new Applier(this, "Applier", {
      queue: this.replication.queue,
      bucket: this.target.bucket,
      timeout: applierTimeout,
      memoryMiB: settings.applierMemoryMiB,
      maxConcurrency: settings.applierConcurrency,
      metricsNamespace,
      environment: {
        ...this.actions.environment,
        ...this.hostRoles.environment,
        ...this.markerSenders?.environment,
        [APPLIER_ENV.pointInTimeDays]: String(settings.pointInTimeDays),
      },
    });
    this.actions.grantTo(this.applier.function);
    checkEnvironmentSize(this.applier.function.node.defaultChild as CfnFunction, {
      [APPLIER_ENV.markerSenders]: { setting: "markerSenders", advice: "list fewer principals (every session of a listed role may send: one role can stand for many people)" },
    });
    this.agentAccess = new AgentAccess(this, "AgentAccess", {
      queue: this.replication.queue,
      bucket: this.target.bucket,
      eventBus: this.actions.eventBus,
      createUser: settings.agentUser,
      readVolumeSnapshots: settings.volumeSnapshots,
      ...(settings.agentRoleTrust ? { roleTrust: settings.agentRoleTrust } : {}),
    });
    this.monitoring = new Monitoring(this, "Monitoring", {
      dashboardName: `${settings.namePrefix}-replication`,
      queue: this.replication.queue,
      deadLetterQueue: this.replication.deadLetterQueue,
      applier: this.applier.function,
      metricsNamespace,
      maxMessageAge: Duration.seconds(settings.maxMessageAgeSeconds),
      drillMaxAgeHours: settings.drillMaxAgeHours,
      ...(settings.alarmTopicArn ? { alarmTopicArn: settings.alarmTopicArn } : {}),
    });

    const output = (name: string, value: string, description: string) => new CfnOutput(this, name, { value, description });
    output(STACK_OUTPUT.queueUrl, this.replication.queue.queueUrl, "queueUrl for the agent config");
    output(STACK_OUTPUT.bucket, this.target.bucket.bucketName, "bucket for the agent config");
    output(STACK_OUTPUT.region, this.region, "region for the agent config");
    output(STACK_OUTPUT.agentPolicyArn, this.agentAccess.policy.managedPolicyArn, "attach to the identity the agent runs as");
    output(STACK_OUTPUT.deadLetterQueueUrl, this.replication.deadLetterQueue.queueUrl, "messages the applier gave up on");
    output(STACK_OUTPUT.eventBus, this.actions.eventBus.eventBusName, "task marker events");
    output(STACK_OUTPUT.dashboard, this.monitoring.dashboard.dashboardName, "CloudWatch dashboard");
    output(STACK_OUTPUT.tasksEnabled, String(settings.tasksEnabled), "whether the applier runs task markers' actions");
    if (this.agentAccess.role) output(STACK_OUTPUT.agentRoleArn, this.agentAccess.role.roleArn, "role source hosts assume");
    for (const [name, role] of this.hostRoles.roles) output(hostRoleOutput(name), role.roleArn, `role source host ${name} assumes (its sets only)`);
    if (this.agentAccess.user) output(STACK_OUTPUT.agentUserName, this.agentAccess.user.userName, "IAM user for agents (create its access keys yourself)");

  }
}
