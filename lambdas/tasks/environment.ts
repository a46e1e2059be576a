// The applier's task settings from its environment, as the stack's
// TaskActions construct sets it (infra/constructs/task-actions.ts).

import { BackupClient } from "@aws-sdk/client-backup";
import { EBSClient } from "@aws-sdk/client-ebs";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { LambdaClient } from "@aws-sdk/client-lambda";
import type { TaskSettings } from "../applier/markers.ts";
import { makeClient } from "../aws-clients.ts";
import { APPLIER_ENDPOINT_ENV, APPLIER_ENV } from "../environment.ts";
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

/** The snapshot lock (0 or absent days: no lock); a value the stack would never set stops the applier rather than lock less than asked. */
export function snapshotLockFromEnvironment(env: NodeJS.ProcessEnv): { lock: SnapshotLockSettings } | Record<string, never> {
  const daysText = env[APPLIER_ENV.snapshotLockDays];
  const days = Number(daysText ?? "0");
  if (!Number.isInteger(days) || days < 0) throw new TaskEnvironmentError(`${APPLIER_ENV.snapshotLockDays} must be a whole number of days, not "${daysText ?? ""}"`);
  if (days === 0) return {};
  const mode = env[APPLIER_ENV.snapshotLockMode] ?? "governance";
  if (mode !== "governance" && mode !== "compliance") throw new TaskEnvironmentError(`${APPLIER_ENV.snapshotLockMode} must be governance or compliance, not "${mode}"`);
  return { lock: { days, mode } };
}

/** Reads the task actions' part of APPLIER_ENV (tasksEnabled, eventBus, invokeAllow, account, backup*, bucketArn, volumeSnapshots, ebsKmsKeyArn, snapshotLock*, snapshotRetentionDays, metricsNamespace). */
export function taskSettingsFromEnvironment(env: NodeJS.ProcessEnv, region: string, bucket: string, store: TargetStore): TaskSettings {
  // One endpoint for the action APIs: a test's fake servers.
  const actionsEndpoint = env[APPLIER_ENDPOINT_ENV.actions];
  const config = { region, ...(actionsEndpoint ? { endpoint: actionsEndpoint } : {}) };
  const bus = env[APPLIER_ENV.eventBus];
  const events = bus ? new EventBridgeSink(makeClient(EventBridgeClient, config, env), bus) : undefined;
  const allowList = (env[APPLIER_ENV.invokeAllow] ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  const vault = env[APPLIER_ENV.backupVault];
  const roleArn = env[APPLIER_ENV.backupRoleArn];
  const retention = Number(env[APPLIER_ENV.snapshotRetentionDays] ?? "0");
  const account = env[APPLIER_ENV.account];
  const kmsKeyArn = env[APPLIER_ENV.ebsKmsKeyArn];
  const metricsNamespace = env[APPLIER_ENV.metricsNamespace];
  return {
    enabled: env[APPLIER_ENV.tasksEnabled] !== "false",
    actions: {
      invoke: new InvokeAction(makeClient(LambdaClient, { ...config, http: { idleTimeoutMs: INVOKE_IDLE_TIMEOUT_MS } }, env), allowList, { region, ...(account ? { account } : {}) }),
      event: events ? new EventAction(events) : unavailable(`no event bus is configured on this target (${APPLIER_ENV.eventBus})`),
      backup: new BackupAction(
        makeClient(BackupClient, config, env),
        vault && roleArn ? { vault, roleArn, defaultResourceArn: env[APPLIER_ENV.bucketArn] ?? `arn:aws:s3:::${bucket}` } : undefined,
      ),
      "ebs-snapshot":
        env[APPLIER_ENV.volumeSnapshots] === "false"
          ? unavailable("EBS snapshots are off on this target (stack setting tidemark:volumeSnapshots=false)")
          : new EbsSnapshotAction(makeClient(EBSClient, config, env), store, { ...(kmsKeyArn ? { kmsKeyArn } : {}), ...snapshotLockFromEnvironment(env) }),
    },
    ...(events ? { events } : {}),
    ...(Number.isFinite(retention) && retention > 0 ? { retentionDays: retention } : {}),
    ...(metricsNamespace ? { metricsNamespace } : {}),
  };
}
