// The applier's task settings from its environment, as the stack's
// TaskActions construct sets it (infra/constructs/task-actions.ts).

import { BackupClient } from "@aws-sdk/client-backup";
import { EBSClient } from "@aws-sdk/client-ebs";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { LambdaClient } from "@aws-sdk/client-lambda";
import type { TaskSettings } from "../applier/markers.ts";
import { clientConfig } from "../aws-clients.ts";
import { APPLIER_ENDPOINT_ENV, APPLIER_ENV } from "../environment.ts";
import { EventAction, unavailable } from "./actions.ts";
import { BackupAction, EventBridgeSink, InvokeAction } from "./aws-actions.ts";
import type { TargetStore } from "../store/store.ts";
import { EbsSnapshotAction } from "../volumes/ebs-snapshot.ts";

/** Reads the task actions' part of APPLIER_ENV (tasksEnabled, eventBus, invokeAllow, account, backup*, bucketArn, volumeSnapshots, ebsKmsKeyArn, snapshotRetentionDays, metricsNamespace). */
export function taskSettingsFromEnvironment(env: NodeJS.ProcessEnv, region: string, bucket: string, store: TargetStore): TaskSettings {
  // One endpoint for the action APIs: a test's fake servers.
  const actionsEndpoint = env[APPLIER_ENDPOINT_ENV.actions];
  const config = clientConfig({ region, ...(actionsEndpoint ? { endpoint: actionsEndpoint } : {}) });
  const bus = env[APPLIER_ENV.eventBus];
  const events = bus ? new EventBridgeSink(new EventBridgeClient(config), bus) : undefined;
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
      invoke: new InvokeAction(new LambdaClient(config), allowList, { region, ...(account ? { account } : {}) }),
      event: events ? new EventAction(events) : unavailable(`no event bus is configured on this target (${APPLIER_ENV.eventBus})`),
      backup: new BackupAction(
        new BackupClient(config),
        vault && roleArn ? { vault, roleArn, defaultResourceArn: env[APPLIER_ENV.bucketArn] ?? `arn:aws:s3:::${bucket}` } : undefined,
      ),
      "ebs-snapshot":
        env[APPLIER_ENV.volumeSnapshots] === "false"
          ? unavailable("EBS snapshots are off on this target (stack setting tidemark:volumeSnapshots=false)")
          : new EbsSnapshotAction(new EBSClient(config), store, kmsKeyArn ? { kmsKeyArn } : {}),
    },
    ...(events ? { events } : {}),
    ...(Number.isFinite(retention) && retention > 0 ? { retentionDays: retention } : {}),
    ...(metricsNamespace ? { metricsNamespace } : {}),
  };
}
