// Read isolation on AWS (DESIGN 8): with `tidemark:hosts`, each source host
// gets its own role that reaches only its own sets' prefixes and its own EBS
// snapshots, and the applier takes a set's messages only from that role (the
// SQS SenderId, checked in lambdas/applier/ownership.ts). One host then can
// neither read nor stage into another's sets, nor read another's disks.

import { Stack } from "aws-cdk-lib";
import { AccountPrincipal, ArnPrincipal, Effect, ManagedPolicy, PolicyStatement, Role } from "aws-cdk-lib/aws-iam";
import type { IBucket } from "aws-cdk-lib/aws-s3";
import type { IQueue } from "aws-cdk-lib/aws-sqs";
import type { IEventBus } from "aws-cdk-lib/aws-events";
import { Construct } from "constructs";
import { PREFIX } from "../../contract/layout.ts";
import { APPLIER_ANNOUNCEMENT_KEY } from "../../contract/applier-accepts.ts";
import { hostRoleOutput, STACK_OUTPUT } from "../../contract/stack-outputs.ts";
import { SET_ROLES_ENV } from "../../lambdas/applier/ownership.ts";
import { acknowledge, bucketObjectsFinding } from "../nag.ts";
import type { HostSettings } from "../settings.ts";
import { AGENT_READ_PREFIXES } from "./agent-access.ts";

export interface HostRolesProps {
  readonly hosts: readonly HostSettings[];
  readonly queue: IQueue;
  readonly bucket: IBucket;
  /** The bus hosts announce "task received" on. */
  readonly eventBus?: IEventBus;
  /**
   * Who may assume a host's role when the host names no `trust`: an account id or an ARN.
   * @default this account
   */
  readonly defaultTrust?: string;
  /**
   * Let each host read back the EBS snapshots of its own volume sets (by the tag tidemark:set).
   * @default false
   */
  readonly readVolumeSnapshots?: boolean;
}

export class HostRoles extends Construct {
  /** Each host's role, by host name. */
  readonly roles: ReadonlyMap<string, Role>;
  /** What the applier needs to check senders: set -> the RoleId of its host's role. */
  readonly environment: Record<string, string>;

  constructor(scope: Construct, id: string, props: HostRolesProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const roles = new Map<string, Role>();
    const setRoles: Record<string, string> = {};
    for (const host of props.hosts) {
      // web-1 -> Web1: a name CloudFormation takes in logical ids.
      const part = hostRoleOutput(host.name).slice(STACK_OUTPUT.hostRoleArnPrefix.length);
      const trust = host.trust ?? props.defaultTrust ?? stack.account;
      const role = new Role(this, part, {
        assumedBy: trust.startsWith("arn:") ? new ArnPrincipal(trust) : new AccountPrincipal(trust),
        description: `tidemark agent role of host ${host.name}: sets ${host.sets.join(", ")} only`,
        managedPolicies: [this.#policy(part, host, props)],
      });
      roles.set(host.name, role);
      for (const set of host.sets) setRoles[set] = role.roleId;
    }
    this.roles = roles;
    this.environment = props.hosts.length > 0 ? { [SET_ROLES_ENV]: stack.toJsonString(setRoles) } : {};
  }

  #policy(part: string, host: HostSettings, props: HostRolesProps): ManagedPolicy {
    const { bucket, queue } = props;
    const stagingPatterns = host.sets.map((set) => `${PREFIX.staging}${set}/*`);
    const readPatterns = host.sets.flatMap((set) => AGENT_READ_PREFIXES.map((prefix) => `${prefix}${set}/*`));
    const policy = new ManagedPolicy(this, `${part}Policy`, {
      description: `tidemark host ${host.name}: send to the replication queue, stage and read sets ${host.sets.join(", ")} only`,
      statements: [
        new PolicyStatement({ sid: "SendToReplicationQueue", effect: Effect.ALLOW, actions: ["sqs:SendMessage", "sqs:GetQueueAttributes"], resources: [queue.queueArn] }),
        new PolicyStatement({
          sid: "WriteOwnStagingObjects",
          effect: Effect.ALLOW,
          actions: ["s3:PutObject", "s3:AbortMultipartUpload"],
          resources: stagingPatterns.map((pattern) => bucket.arnForObjects(pattern)),
        }),
        new PolicyStatement({
          sid: "ReadOwnSets",
          effect: Effect.ALLOW,
          actions: ["s3:GetObject", "s3:GetObjectVersion"],
          // And what the stack's applier announced it reads (contract/applier-accepts.ts): the same for every set.
          resources: [...readPatterns, APPLIER_ANNOUNCEMENT_KEY].map((pattern) => bucket.arnForObjects(pattern)),
        }),
        new PolicyStatement({
          // Without list access a missing status object reads as 403, not 404.
          sid: "ListOwnSets",
          effect: Effect.ALLOW,
          actions: ["s3:ListBucket"],
          resources: [bucket.bucketArn],
          conditions: { StringLike: { "s3:prefix": host.sets.flatMap((set) => AGENT_READ_PREFIXES.map((prefix) => `${prefix}${set}/*`)) } },
        }),
        ...(props.eventBus ? [new PolicyStatement({ sid: "AnnounceReceivedTasks", effect: Effect.ALLOW, actions: ["events:PutEvents"], resources: [props.eventBus.eventBusArn] })] : []),
        ...(props.readVolumeSnapshots
          ? [
              new PolicyStatement({
                sid: "ReadOwnEbsSnapshots",
                effect: Effect.ALLOW,
                actions: ["ebs:ListSnapshotBlocks", "ebs:GetSnapshotBlock"],
                resources: [Stack.of(this).formatArn({ service: "ec2", account: "", resource: "snapshot", resourceName: "*" })],
                conditions: { StringEquals: { "aws:ResourceTag/tidemark:set": [...host.sets] } },
              }),
            ]
          : []),
      ],
    });
    acknowledge(policy, [
      ...(props.readVolumeSnapshots
        ? [
            {
              id: "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>::snapshot/*]",
              reason: `EBS snapshot ids are made by StartSnapshot at each marker, after deploy; host ${host.name} may read only those tagged with one of its sets (tidemark:set, a condition on the statement).`,
            },
          ]
        : []),
      ...stagingPatterns.map((pattern) => ({
        id: bucketObjectsFinding(bucket, pattern),
        reason: `Staging keys of a set are derived from seq and sha256 at send time; host ${host.name} may write only under its own set's staging prefix.`,
      })),
      ...readPatterns.map((pattern) => ({
        id: bucketObjectsFinding(bucket, pattern),
        reason: `Read-only, one set of host ${host.name}: the keys under it are the set's file paths, snapshot and task ids, known only at run time.`,
      })),
    ]);
    return policy;
  }
}
