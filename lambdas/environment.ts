// The applier's environment, named once: what the stack (infra/) sets on the
// function and the handler (lambdas/) reads. test/infra/shared-names.test.ts
// holds the two to it.

/** Every variable the stack may set on the applier. */
export const APPLIER_ENV = {
  /** The target bucket's name. */
  bucket: "TIDEMARK_BUCKET",
  /** Its ARN: what a `backup` marker backs up unless it names a resource. */
  bucketArn: "TIDEMARK_BUCKET_ARN",
  /** CloudWatch namespace of the embedded metrics. */
  metricsNamespace: "TIDEMARK_METRICS_NAMESPACE",
  /** The protection window in days (tidemark:pointInTimeDays). */
  pointInTimeDays: "TIDEMARK_POINT_IN_TIME_DAYS",
  /** JSON object: set -> role id of the host that owns it (tidemark:hosts). */
  setRoles: "TIDEMARK_SET_ROLES",
  /**
   * JSON array of { id, arn }: the principals allowed to send markers straight to the queue for any set
   * (tidemark:markerSenders), each with the unique id SQS names it by. Absent: the looser default.
   */
  markerSenders: "TIDEMARK_MARKER_SENDERS",
  /** "false" records markers as skipped (tidemark:tasksEnabled). */
  tasksEnabled: "TIDEMARK_TASKS_ENABLED",
  eventBus: "TIDEMARK_EVENT_BUS",
  /** Comma-separated function ARNs an `invoke` marker may call. */
  invokeAllow: "TIDEMARK_INVOKE_ALLOW",
  /** The account a function named without its ARN is in. */
  account: "TIDEMARK_ACCOUNT",
  snapshotRetentionDays: "TIDEMARK_SNAPSHOT_RETENTION_DAYS",
  /** "false" turns `ebs-snapshot` off (tidemark:volumeSnapshots). */
  volumeSnapshots: "TIDEMARK_VOLUME_SNAPSHOTS",
  ebsKmsKeyArn: "TIDEMARK_EBS_KMS_KEY_ARN",
  /** Days each `ebs-snapshot` is locked (tidemark:snapshotLockDays; 0 or absent: no lock). */
  snapshotLockDays: "TIDEMARK_SNAPSHOT_LOCK_DAYS",
  /** governance or compliance (tidemark:snapshotLockMode). */
  snapshotLockMode: "TIDEMARK_SNAPSHOT_LOCK_MODE",
  backupVault: "TIDEMARK_BACKUP_VAULT",
  backupRoleArn: "TIDEMARK_BACKUP_ROLE_ARN",
} as const;

/** Endpoints that point the applier at an S3-compatible store, an emulator or fakes; the stack sets none of them. */
export const APPLIER_ENDPOINT_ENV = {
  s3: "TIDEMARK_S3_ENDPOINT",
  sqs: "TIDEMARK_SQS_ENDPOINT",
  /** One endpoint for the task actions' APIs (EventBridge, Lambda, Backup, EBS). */
  actions: "TIDEMARK_ACTIONS_ENDPOINT",
} as const;
