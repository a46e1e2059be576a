// What task markers' actions reach on the target: an EventBridge bus for
// `event` markers, optionally an AWS Backup vault and role for `backup`
// markers, EBS direct API access for `ebs-snapshot` markers of volume sets,
// and `invoke` limited to an allow-list of functions.

import { Stack } from "aws-cdk-lib";
import { BackupVault } from "aws-cdk-lib/aws-backup";
import { EventBus } from "aws-cdk-lib/aws-events";
import { type IGrantable, ManagedPolicy, PolicyStatement, Role, ServicePrincipal } from "aws-cdk-lib/aws-iam";
import { Construct } from "constructs";
import { APPLIER_ENV } from "../../lambdas/environment.ts";
import { acknowledge } from "../nag.ts";
import type { LockMode } from "../settings.ts";

export interface TaskActionsProps {
  /** Prefix of the bus and vault names. */
  readonly namePrefix: string;
  /**
   * Whether the applier runs markers' actions at all.
   * @default true
   */
  readonly enabled?: boolean;
  /**
   * Lambda function ARNs an `invoke` marker may call.
   * @default []
   */
  readonly invokeAllowList?: readonly string[];
  /**
   * Create a Backup vault and a role AWS Backup assumes to back up the target bucket.
   * @default false
   */
  readonly backup?: boolean;
  /**
   * Allow EBS direct API snapshot writes for volume sets.
   * @default false
   */
  readonly volumeSnapshots?: boolean;
  /**
   * KMS key the EBS snapshots are encrypted with.
   * @default the account's default EBS encryption
   */
  readonly ebsKmsKeyArn?: string;
  /**
   * Days snapshot manifests are retained.
   * @default 30
   */
  readonly snapshotRetentionDays?: number;
  /**
   * Lock each EBS snapshot an `ebs-snapshot` marker cuts (EC2 LockSnapshot) for this many days, in this mode.
   * @default no lock
   */
  readonly snapshotLock?: { readonly days: number; readonly mode: LockMode };
}

/** The EBS direct APIs an `ebs-snapshot` marker writes and reads snapshots with. */
export const EBS_DIRECT_ACTIONS = [
  "ebs:StartSnapshot",
  "ebs:PutSnapshotBlock",
  "ebs:CompleteSnapshot",
  "ebs:ListSnapshotBlocks",
  "ebs:ListChangedBlocks",
  "ebs:GetSnapshotBlock",
] as const;

export class TaskActions extends Construct {
  readonly eventBus: EventBus;
  readonly backupVault?: BackupVault;
  readonly backupRole?: Role;
  readonly invokeAllowList: readonly string[];
  /** Environment the applier reads its action settings from. */
  readonly environment: Record<string, string>;
  readonly #volumeSnapshots: boolean;
  readonly #ebsKmsKeyArn?: string;
  readonly #snapshotLock: boolean;

  constructor(scope: Construct, id: string, props: TaskActionsProps) {
    super(scope, id);
    this.invokeAllowList = [...(props.invokeAllowList ?? [])];
    this.#volumeSnapshots = props.volumeSnapshots ?? false;
    if (props.ebsKmsKeyArn) this.#ebsKmsKeyArn = props.ebsKmsKeyArn;
    this.#snapshotLock = this.#volumeSnapshots && props.snapshotLock !== undefined;
    this.eventBus = new EventBus(this, "Bus", {
      eventBusName: `${props.namePrefix}-events`,
      description: "tidemark: an event per task marker reached, and per `event` marker",
    });
    if (props.backup) {
      this.backupVault = new BackupVault(this, "Vault", { backupVaultName: `${props.namePrefix}-vault` });
      this.backupRole = new Role(this, "BackupRole", {
        assumedBy: new ServicePrincipal("backup.amazonaws.com"),
        description: "tidemark: AWS Backup backs up the target bucket with this role at `backup` markers",
        managedPolicies: [
          ManagedPolicy.fromAwsManagedPolicyName("AWSBackupServiceRolePolicyForS3Backup"),
          ManagedPolicy.fromAwsManagedPolicyName("AWSBackupServiceRolePolicyForS3Restore"),
        ],
      });
      acknowledge(
        this.backupRole,
        ["AWSBackupServiceRolePolicyForS3Backup", "AWSBackupServiceRolePolicyForS3Restore"].map((name) => ({
          id: `AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/${name}]`,
          reason: "AWS Backup documents and maintains these service-role policies as exactly what backing up and restoring S3 needs.",
        })),
      );
    }
    this.environment = {
      [APPLIER_ENV.tasksEnabled]: String(props.enabled ?? true),
      [APPLIER_ENV.eventBus]: this.eventBus.eventBusName,
      [APPLIER_ENV.invokeAllow]: this.invokeAllowList.join(","),
      // A marker naming a function without its ARN means this account's function, as Lambda reads the name.
      [APPLIER_ENV.account]: Stack.of(this).account,
      [APPLIER_ENV.snapshotRetentionDays]: String(props.snapshotRetentionDays ?? 30),
      [APPLIER_ENV.volumeSnapshots]: String(this.#volumeSnapshots),
      ...(this.#ebsKmsKeyArn ? { [APPLIER_ENV.ebsKmsKeyArn]: this.#ebsKmsKeyArn } : {}),
      ...(this.#snapshotLock && props.snapshotLock
        ? { [APPLIER_ENV.snapshotLockDays]: String(props.snapshotLock.days), [APPLIER_ENV.snapshotLockMode]: props.snapshotLock.mode }
        : {}),
      ...(this.backupVault && this.backupRole
        ? { [APPLIER_ENV.backupVault]: this.backupVault.backupVaultName, [APPLIER_ENV.backupRoleArn]: this.backupRole.roleArn }
        : {}),
    };
  }

  /** Gives the applier what the actions need, and nothing beyond it. */
  grantTo(applier: IGrantable): void {
    this.eventBus.grantPutEventsTo(applier);
    if (this.invokeAllowList.length > 0) {
      applier.grantPrincipal.addToPrincipalPolicy(new PolicyStatement({ actions: ["lambda:InvokeFunction"], resources: [...this.invokeAllowList] }));
    }
    if (this.backupVault && this.backupRole) {
      applier.grantPrincipal.addToPrincipalPolicy(new PolicyStatement({ actions: ["backup:StartBackupJob"], resources: [this.backupVault.backupVaultArn] }));
      this.backupRole.grantPassRole(applier.grantPrincipal);
    }
    if (this.#volumeSnapshots) {
      // Snapshot ids do not exist before StartSnapshot; the resource is every snapshot of this account and region.
      const snapshots = Stack.of(this).formatArn({ service: "ec2", account: "", resource: "snapshot", resourceName: "*" });
      applier.grantPrincipal.addToPrincipalPolicy(new PolicyStatement({ actions: [...EBS_DIRECT_ACTIONS], resources: [snapshots] }));
      // StartSnapshot tags the snapshot (set, task, label) as it creates it.
      applier.grantPrincipal.addToPrincipalPolicy(new PolicyStatement({ actions: ["ec2:CreateTags"], resources: [snapshots] }));
      if (this.#snapshotLock) {
        // Locking only, never UnlockSnapshot, and only snapshots StartSnapshot tagged as tidemark's.
        applier.grantPrincipal.addToPrincipalPolicy(
          new PolicyStatement({ actions: ["ec2:LockSnapshot"], resources: [snapshots], conditions: { StringLike: { "aws:ResourceTag/tidemark:set": "*" } } }),
        );
      }
      if (this.#ebsKmsKeyArn) {
        // What EBS asks of the caller's key when it encrypts the blocks of a snapshot written through the direct APIs.
        applier.grantPrincipal.addToPrincipalPolicy(
          new PolicyStatement({
            actions: ["kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*", "kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt", "kms:Encrypt"],
            resources: [this.#ebsKmsKeyArn],
          }),
        );
      }
      if (Construct.isConstruct(applier.grantPrincipal)) {
        acknowledge(applier.grantPrincipal, [
          {
            id: "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ec2:<AWS::Region>::snapshot/*]",
            reason: "EBS snapshot ids exist only once StartSnapshot created them, so the applier's EBS direct permissions name every snapshot of this account and region.",
          },
        ]);
      }
    }
  }
}
