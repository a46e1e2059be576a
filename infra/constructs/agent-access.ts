// What a source host's agent may do in the target account: send to the
// replication queue, write staging objects, announce received markers on the
// event bus, and read the applier's status, task results, snapshots and the
// mirror (to restore its own data). Nothing else: an agent host that is
// compromised cannot change or delete the mirror or its snapshots.

import { Stack } from "aws-cdk-lib";
import { AccountPrincipal, ArnPrincipal, Effect, ManagedPolicy, PolicyStatement, Role, User } from "aws-cdk-lib/aws-iam";
import type { IBucket } from "aws-cdk-lib/aws-s3";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import type { IEventBus } from "aws-cdk-lib/aws-events";
import { Construct } from "constructs";
import { acknowledge, bucketObjectsFinding } from "../nag.ts";
import { PREFIX } from "../../contract/layout.ts";

/**
 * The prefixes an agent reads: status (tidemark status), task results
 * (tidemark task --wait, tidemark tasks), snapshot manifests and the content
 * they name (tidemark snapshots, tidemark restore), drill reports (tidemark
 * status, the drill schedule).
 */
export const AGENT_READ_PREFIXES = [PREFIX.state, PREFIX.tasks, PREFIX.snapshots, PREFIX.data, PREFIX.preserved, PREFIX.blocks, PREFIX.drills, PREFIX.history] as const;

const READ_PURPOSE: Record<(typeof AGENT_READ_PREFIXES)[number], string> = {
  [PREFIX.state]: "the applier's per-set status (for tidemark status)",
  [PREFIX.tasks]: "the results of task markers",
  [PREFIX.snapshots]: "snapshot manifests",
  [PREFIX.data]: "the live mirror (tidemark restore of a snapshot)",
  [PREFIX.preserved]: "content kept for snapshots (tidemark restore)",
  [PREFIX.blocks]: "volume sets' block content (tidemark restore of a volume)",
  [PREFIX.drills]: "recovery drill reports (tidemark status, the drill schedule)",
  [PREFIX.history]: "point-in-time history (tidemark restore --at, tidemark timeline)",
};

export interface AgentAccessProps {
  readonly queue: IQueue;
  readonly bucket: IBucket;
  /** The bus the agent announces "task received" on (ONRECEIVE) once the queue accepted a marker. */
  readonly eventBus?: IEventBus;
  /**
   * Also create an IAM user with the policy (create its access keys yourself).
   * @default false
   */
  readonly createUser?: boolean;
  /**
   * A principal allowed to assume an agent role with the policy: a 12-digit
   * account id or an ARN (a role, a user, an IAM Roles Anywhere profile's role).
   * @default no role
   */
  readonly roleTrust?: string;
  /**
   * Let the agent read back the EBS snapshots `ebs-snapshot` markers cut (tidemark restore --snapshot snap-...), and only those.
   * @default false
   */
  readonly readVolumeSnapshots?: boolean;
}

export class AgentAccess extends Construct {
  readonly policy: ManagedPolicy;
  readonly user?: User;
  readonly role?: Role;

  constructor(scope: Construct, id: string, props: AgentAccessProps) {
    super(scope, id);
    const { queue, bucket } = props;
    this.policy = new ManagedPolicy(this, "Policy", {
      description: "tidemark agent: send to the replication queue, write staging objects, read status, task results, snapshots and the mirror",
      statements: [
        new PolicyStatement({
          sid: "SendToReplicationQueue",
          effect: Effect.ALLOW,
          // GetQueueAttributes lets the agent check at start that its queue exists.
          actions: ["sqs:SendMessage", "sqs:GetQueueAttributes"],
          resources: [queue.queueArn],
        }),
        new PolicyStatement({
          sid: "WriteStagingObjects",
          effect: Effect.ALLOW,
          // Large payloads go up in parts; a failed upload is aborted rather than left to the lifecycle rule.
          actions: ["s3:PutObject", "s3:AbortMultipartUpload"],
          resources: [bucket.arnForObjects(`${PREFIX.staging}*`)],
        }),
        new PolicyStatement({
          sid: "ReadStatusTasksSnapshots",
          effect: Effect.ALLOW,
          // GetObjectVersion: snapshots on a versioned bucket name object versions.
          actions: ["s3:GetObject", "s3:GetObjectVersion"],
          resources: AGENT_READ_PREFIXES.map((prefix) => bucket.arnForObjects(`${prefix}*`)),
        }),
        new PolicyStatement({
          // Without list access a missing status object reads as 403, not 404.
          sid: "ListStatusTasksSnapshots",
          effect: Effect.ALLOW,
          actions: ["s3:ListBucket"],
          resources: [bucket.bucketArn],
          conditions: { StringLike: { "s3:prefix": AGENT_READ_PREFIXES.map((prefix) => `${prefix}*`) } },
        }),
        ...(props.eventBus
          ? [new PolicyStatement({ sid: "AnnounceReceivedTasks", effect: Effect.ALLOW, actions: ["events:PutEvents"], resources: [props.eventBus.eventBusArn] })]
          : []),
        ...(props.readVolumeSnapshots
          ? [
              new PolicyStatement({
                sid: "ReadTidemarkEbsSnapshots",
                effect: Effect.ALLOW,
                actions: ["ebs:ListSnapshotBlocks", "ebs:GetSnapshotBlock"],
                resources: [Stack.of(scope).formatArn({ service: "ec2", account: "", resource: "snapshot", resourceName: "*" })],
                // Only snapshots the applier cut: they carry the set's tag.
                conditions: { StringLike: { "aws:ResourceTag/tidemark:set": "*" } },
              }),
            ]
          : []),
      ],
    });
    acknowledge(this, [
      ...(props.readVolumeSnapshots
        ? [
            {
              id: "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>::snapshot/*]",
              reason: "EBS snapshot ids are made by StartSnapshot at each marker; the agent may read only those tagged tidemark:set (a condition on the statement).",
            },
          ]
        : []),
      {
        id: bucketObjectsFinding(bucket, `${PREFIX.staging}*`),
        reason: "Staging keys are derived from seq and sha256 at send time; the agent may write only under staging/.",
      },
      ...AGENT_READ_PREFIXES.map((prefix) => ({
        id: bucketObjectsFinding(bucket, `${prefix}*`),
        reason: `Read-only: the agent reads ${READ_PURPOSE[prefix]} under ${prefix} for every set it replicates, whose names are not known at deploy time.`,
      })),
    ]);
    if (props.createUser) {
      this.user = new User(this, "User", { managedPolicies: [this.policy] });
    }
    if (props.roleTrust) {
      this.role = new Role(this, "Role", {
        assumedBy: /^\d{12}$/.test(props.roleTrust) ? new AccountPrincipal(props.roleTrust) : new ArnPrincipal(props.roleTrust),
        description: "tidemark agent role: assumed by source hosts",
        managedPolicies: [this.policy],
      });
    }
  }
}
