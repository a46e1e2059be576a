// The target side on the emulator for a test: queue, bucket, and the applier
// driven by the local poller, with a record of every applied seq.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { WireRecord } from "../../contract/wire.ts";
import type { ConfigFile } from "../../agent/config.ts";
import type { TaskSettings } from "../../lambdas/applier/markers.ts";
import type { HistorySettings } from "../../lambdas/history/recorder.ts";
import { ChangeMessageVisibilityCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { SQSRecord } from "aws-lambda";
import { makeS3Client, makeSqsClient } from "../../lambdas/aws-clients.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { ensureTargetResources, startEmulator } from "../../lambdas/local/emulator.ts";
import { LocalPoller } from "../../lambdas/local/poller.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";

export const REGION = "us-east-1";

export interface TestCloud {
  readonly endpoint: string;
  readonly queueUrl: string;
  readonly bucket: string;
  readonly store: S3Store;
  /** Seqs applied per set, in apply order. */
  readonly applied: Map<string, number[]>;
  readonly rejections: string[];
  /** Log lines of messages refused as not from their set's owner. */
  readonly refusals: string[];
  readonly sqs: SQSClient;
  writeConfig(dir: string, sets: ConfigFile["sets"], extra?: Partial<ConfigFile>): string;
  stop(): Promise<void>;
}

export async function startTestCloud(
  options: {
    visibilityTimeoutSeconds?: number;
    port?: number;
    dataDir?: string;
    onApplied?: (set: string, record: WireRecord) => void;
    /** An emulator already running (in a process of its own) instead of one in this process. */
    emulatorEndpoint?: string;
    /** Where the target side's clients send their requests, when not straight to the emulator (the bench's latency proxy). */
    clientEndpoint?: string;
    /** The target's task settings; a function gets the cloud's store (an ebs-snapshot action reads blocks from it). */
    tasks?: TaskSettings | ((store: S3Store) => TaskSettings);
    /** The applier's point-in-time history. @default the applier's */
    history?: HistorySettings;
  } = {},
): Promise<TestCloud> {
  const emulator = options.emulatorEndpoint
    ? { endpoint: options.emulatorEndpoint, stop: async () => undefined }
    : await startEmulator({ port: options.port ?? 0, ...(options.dataDir ? { dataDir: options.dataDir } : {}) });
  const target = await ensureTargetResources({
    endpoint: emulator.endpoint,
    region: REGION,
    visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 5,
  });
  const clientEndpoint = options.clientEndpoint ?? emulator.endpoint;
  const s3 = makeS3Client({ region: REGION, endpoint: clientEndpoint });
  const sqs = makeSqsClient({ region: REGION, endpoint: clientEndpoint });
  // The SDK sends SQS requests to the queue URL's host: the clients' queue URL names their endpoint.
  const clientQueueUrl = target.queueUrl.replace(emulator.endpoint, clientEndpoint);
  const store = new S3Store(s3, target.bucket);
  const applied = new Map<string, number[]>();
  const rejections: string[] = [];
  const refusals: string[] = [];
  const applier = new Applier({
    store,
    ...(options.tasks ? { tasks: typeof options.tasks === "function" ? options.tasks(store) : options.tasks } : {}),
    ...(options.history ? { history: options.history } : {}),
    log: (line) => {
      if (line.includes('"message rejected"')) rejections.push(line);
      if (line.includes('"message refused"')) refusals.push(line);
    },
    observer: {
      applied(set: string, record: WireRecord) {
        const list = applied.get(set) ?? [];
        list.push(record.seq);
        applied.set(set, list);
        options.onApplied?.(set, record);
      },
    },
  });
  const retrySoon = async (record: SQSRecord) => {
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: clientQueueUrl, ReceiptHandle: record.receiptHandle, VisibilityTimeout: 0 }));
  };
  const poller = new LocalPoller({ sqs, queueUrl: clientQueueUrl, region: REGION, handler: createHandler(applier, () => {}, undefined, retrySoon), waitTimeSeconds: 1 });
  poller.start();
  return {
    endpoint: emulator.endpoint,
    queueUrl: target.queueUrl,
    bucket: target.bucket,
    store,
    applied,
    rejections,
    refusals,
    sqs,
    writeConfig(dir, sets, extra = {}) {
      const file = join(dir, "tidemark.config.json");
      const config: ConfigFile = { region: REGION, endpoint: emulator.endpoint, queueUrl: target.queueUrl, bucket: target.bucket, stateDir: "state", sets, ...extra };
      writeFileSync(file, JSON.stringify(config, null, 2));
      return file;
    },
    async stop() {
      await poller.stop();
      sqs.destroy();
      s3.destroy();
      await emulator.stop();
    },
  };
}

/** Polls until check passes (returns without throwing) or the time is up; then throws the last failure. */
export async function eventually(check: () => Promise<void>, timeoutMs = 60_000, everyMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await check();
      return;
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  }
}
