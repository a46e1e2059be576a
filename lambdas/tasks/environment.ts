// The applier's task settings from its environment, as the stack's
// TaskActions construct sets it (infra/constructs/task-actions.ts).

import { BackupClient } from "@aws-sdk/client-backup";
import { EBSClient } from "@aws-sdk/client-ebs";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { LambdaClient } from "@aws-sdk/client-lambda";
import type { TaskSettings } from "../applier/markers.ts";
import { makeClient } from "../aws-clients.ts";
import { EventAction, unavailable } from "./actions.ts";
import { BackupAction, InvokeAction } from "./aws-actions.ts";
import { EventBridgeSink } from "./event-sinks.ts";
import type { TargetStore } from "../store/store.ts";
import { EbsSnapshotAction } from "../volumes/ebs-snapshot.ts";
import type { SnapshotLockSettings } from "../volumes/snapshot-lock.ts";

/** A synchronous invoke holds its connection silent while the function runs (up to Lambda's 15 minutes): no idle limit below that. */
const INVOKE_IDLE_TIMEOUT_MS = 16 * 60_000;

export class TaskEnvironmentError extends Error {
  override name = "TaskEnvironmentError";
}

/** TIDEMARK_SNAPSHOT_LOCK_DAYS (0 or absent: no lock) and _MODE; a value the stack would never set stops the applier rather than lock less than asked. */
export function snapshotLockFromEnvironment(env: NodeJS.ProcessEnv): { lock: SnapshotLockSettings } | Record<string, never> {
  const days = Number(env.TIDEMARK_SNAPSHOT_LOCK_DAYS ?? "0");
  if (!Number.isInteger(days) || days < 0) throw new TaskEnvironmentError(`TIDEMARK_SNAPSHOT_LOCK_DAYS must be a whole number of days, not "${env.TIDEMARK_SNAPSHOT_LOCK_DAYS ?? ""}"`);
  if (days === 0) return {};
  const mode = env.TIDEMARK_SNAPSHOT_LOCK_MODE ?? "governance";
  if (mode !== "governance" && mode !== "compliance") throw new TaskEnvironmentError(`TIDEMARK_SNAPSHOT_LOCK_MODE must be governance or compliance, not "${mode}"`);
  return { lock: { days, mode } };
}

/** Reads TIDEMARK_TASKS_ENABLED, _EVENT_BUS, _INVOKE_ALLOW, _ACCOUNT, _BACKUP_VAULT, _BACKUP_ROLE_ARN, _BUCKET_ARN, _VOLUME_SNAPSHOTS, _EBS_KMS_KEY_ARN, _SNAPSHOT_LOCK_DAYS, _SNAPSHOT_LOCK_MODE, _SNAPSHOT_RETENTION_DAYS and _METRICS_NAMESPACE. */
export function taskSettingsFromEnvironment(env: NodeJS.ProcessEnv, region: string, bucket: string, store: TargetStore): TaskSettings {
  // One endpoint for the action APIs: a test's fake servers.
  const config = { region, ...(env.TIDEMARK_ACTIONS_ENDPOINT ? { endpoint: env.TIDEMARK_ACTIONS_ENDPOINT } : {}) };
  const bus = env.TIDEMARK_EVENT_BUS;
  const events = bus ? new EventBridgeSink(makeClient(EventBridgeClient, config, env), bus) : undefined;
  const allowList = (env.TIDEMARK_INVOKE_ALLOW ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  const vault = env.TIDEMARK_BACKUP_VAULT;
  const roleArn = env.TIDEMARK_BACKUP_ROLE_ARN;
  const retention = Number(env.TIDEMARK_SNAPSHOT_RETENTION_DAYS ?? "0");
  return {
    enabled: env.TIDEMARK_TASKS_ENABLED !== "false",
    actions: {
      invoke: new InvokeAction(makeClient(LambdaClient, { ...config, http: { idleTimeoutMs: INVOKE_IDLE_TIMEOUT_MS } }, env), allowList, { region, ...(env.TIDEMARK_ACCOUNT ? { account: env.TIDEMARK_ACCOUNT } : {}) }),
      event: events ? new EventAction(events) : unavailable("no event bus is configured on this target (TIDEMARK_EVENT_BUS)"),
      backup: new BackupAction(
        makeClient(BackupClient, config, env),
        vault && roleArn ? { vault, roleArn, defaultResourceArn: env.TIDEMARK_BUCKET_ARN ?? `arn:aws:s3:::${bucket}` } : undefined,
      ),
      "ebs-snapshot":
        env.TIDEMARK_VOLUME_SNAPSHOTS === "false"
          ? unavailable("EBS snapshots are off on this target (stack setting tidemark:volumeSnapshots=false)")
          : new EbsSnapshotAction(makeClient(EBSClient, config, env), store, {
              ...(env.TIDEMARK_EBS_KMS_KEY_ARN ? { kmsKeyArn: env.TIDEMARK_EBS_KMS_KEY_ARN } : {}),
              ...snapshotLockFromEnvironment(env),
            }),
    },
    ...(events ? { events } : {}),
    ...(Number.isFinite(retention) && retention > 0 ? { retentionDays: retention } : {}),
    ...(env.TIDEMARK_METRICS_NAMESPACE ? { metricsNamespace: env.TIDEMARK_METRICS_NAMESPACE } : {}),
  };
}
