// The local cloud's target side, wired once: the emulator's queue and bucket,
// the same applier and handler that run in Lambda, the early release of a
// marker's message that the deployed applier arranges, and the poller with
// the event source mapping's FIFO semantics; the EBS stand-in when asked.
// `tidemark local`, the tests and the bench all start it here.

import { ChangeMessageVisibilityCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { S3Client } from "@aws-sdk/client-s3";
import type { SQSRecord } from "aws-lambda";
import { Applier, type ApplierObserver } from "../applier/applier.ts";
import { createHandler, type BatchHandler } from "../applier/handler.ts";
import type { TaskSettings } from "../applier/markers.ts";
import { IN_PROCESS, makeS3Client, makeSqsClient } from "../aws-clients.ts";
import type { HistorySettings } from "../history/recorder.ts";
import { historySettingsFromEnvironment } from "../history/settings.ts";
import { DirectS3Store } from "../store/direct-s3-store.ts";
import { S3Store } from "../store/s3-store.ts";
import { recordBucketVersioning, settleBucketVersioning, type SettledVersioning } from "./bucket-versioning.ts";
import { startFakeEbs, type FakeEbs } from "./ebs-standin.ts";
import { ensureTargetResources, startEmulator } from "./emulator.ts";
import { LocalPoller, type PollerOptions } from "./poller.ts";
import type { LocalEbs } from "./tasks.ts";

/** The local cloud's region: the emulator answers for any, the config names this one. */
export const LOCAL_REGION = "us-east-1";

/** The emulator's own options (port, data dir, ...), passed to startEmulator as they are. */
export type LocalEmulatorOptions = NonNullable<Parameters<typeof startEmulator>[0]>;

/** An emulator already running, at endpoint. */
export interface RunningEmulator {
  readonly endpoint: string;
  /**
   * It is startEmulator's (lambdas/local/emulator.ts), which checks every checksum a write sends as S3 does: the
   * target trusts the SHA-256 a HEAD reports, as on S3, instead of reading objects back to hash them.
   * @default false (an endpoint is not trusted to have checked what it keeps)
   */
  readonly verifiesChecksums?: boolean;
}

export interface LocalTargetOptions {
  /**
   * The emulator to start, or the endpoint of one already running (in a process of its own).
   * Unlike startEmulator's, its bucket is versioned unless `versioned: false`, as the stack's is; a
   * persisted one keeps the versioning it was created with (bucket-versioning.ts).
   * @default startEmulator's other defaults (port 4566, in memory)
   */
  readonly emulator?: LocalEmulatorOptions | RunningEmulator;
  /** @default LOCAL_REGION */
  readonly region?: string;
  /** Where the target side's clients send their requests, when not straight to the emulator (a proxy that counts or delays them). */
  readonly clientEndpoint?: string;
  /** The queue's visibility timeout. @default ensureTargetResources's */
  readonly visibilityTimeoutSeconds?: number;
  /** Receives before a message moves to the dead-letter queue. @default the stack's */
  readonly maxReceiveCount?: number;
  /**
   * Start the stand-in for the EBS direct APIs; `dir` keeps its snapshots on disk.
   * @default not started
   */
  readonly ebs?: { readonly dir?: string };
  /** The applier's task settings; a function gets the target's store and the EBS stand-in (when started). @default the applier's */
  readonly tasks?: TaskSettings | ((target: { store: S3Store; ebs?: LocalEbs }) => TaskSettings);
  /** The protection window; "environment" reads it as a deployed applier does (TIDEMARK_POINT_IN_TIME_DAYS). @default the applier's (7 days) */
  readonly history?: HistorySettings | "environment";
  /** The applier's log lines (rejections, refusals). @default dropped */
  readonly log?: (line: string) => void;
  /** The handler's metrics lines, one per batch. @default dropped */
  readonly metrics?: (line: string) => void;
  readonly observer?: ApplierObserver;
  /** The applier's single-object S3 requests signed and sent directly (S3Store's direct path) rather than through the SDK. @default true, as deployed */
  readonly directRequests?: boolean;
  /** Wraps the handler the poller drives (the bench times each invocation). */
  readonly wrapHandler?: (handler: BatchHandler) => BatchHandler;
  /** The poller's knobs. @default the poller's */
  readonly poller?: Pick<PollerOptions, "waitTimeSeconds" | "batchSize" | "maxConcurrency" | "idlePauseMs" | "onError">;
}

export interface LocalTarget {
  /** The emulator's endpoint (what an agent's config names). */
  readonly endpoint: string;
  readonly queueUrl: string;
  readonly dlqUrl: string;
  readonly bucket: string;
  readonly region: string;
  /** The store the applier writes through (through clientEndpoint when given). */
  readonly store: S3Store;
  /** The target side's SQS client (through clientEndpoint when given). */
  readonly sqs: SQSClient;
  /** The EBS stand-in, when asked for. */
  readonly ebs?: FakeEbs;
  /** The started emulator's bucket versioning and why (none for an emulator given by endpoint). */
  readonly bucketVersioning?: SettledVersioning;
  /** Stops the poller (after the batches in the handler finish), the stand-in and the emulator it started. */
  stop(): Promise<void>;
}

/** Starts the local target; on a failure half way, stops what it had started and throws. */
export function startLocalTarget(options: LocalTargetOptions & { readonly ebs: { readonly dir?: string } }): Promise<LocalTarget & { readonly ebs: FakeEbs }>;
export function startLocalTarget(options?: LocalTargetOptions): Promise<LocalTarget>;
export async function startLocalTarget(options: LocalTargetOptions = {}): Promise<LocalTarget> {
  const region = options.region ?? LOCAL_REGION;
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  };
  try {
    const emulatorOptions = options.emulator ?? {};
    let endpoint: string;
    let versioning: SettledVersioning | undefined;
    if ("endpoint" in emulatorOptions) endpoint = emulatorOptions.endpoint;
    else {
      // An emulator of its own: versioned unless asked not to, and a persisted one as it was created.
      versioning = settleBucketVersioning(emulatorOptions.dataDir, emulatorOptions.versioned);
      endpoint = await startOwnEmulator({ ...emulatorOptions, versioned: versioning.versioned }, stops);
    }
    const ebs = options.ebs ? await startFakeEbs(options.ebs.dir !== undefined ? { dir: options.ebs.dir } : {}) : undefined;
    if (ebs) stops.push(() => ebs.stop());
    const resources = await ensureTargetResources({
      endpoint,
      region,
      ...(options.visibilityTimeoutSeconds !== undefined ? { visibilityTimeoutSeconds: options.visibilityTimeoutSeconds } : {}),
      ...(options.maxReceiveCount !== undefined ? { maxReceiveCount: options.maxReceiveCount } : {}),
    });
    if (versioning) recordBucketVersioning(versioning);
    const clientEndpoint = options.clientEndpoint ?? endpoint;
    const s3: S3Client = makeS3Client({ region, endpoint: clientEndpoint, http: IN_PROCESS });
    const sqs = makeSqsClient({ region, endpoint: clientEndpoint, http: IN_PROCESS });
    stops.push(async () => {
      sqs.destroy();
      s3.destroy();
    });
    // The SDK sends SQS requests to the queue URL's host: the clients' queue URL names their endpoint.
    const clientQueueUrl = resources.queueUrl.replace(endpoint, clientEndpoint);
    // Its own emulator checks every checksum a write sends, as S3 does (emulator-checksums.ts); one at a given endpoint only when said so.
    const storeOptions = { storeVerifiesChecksums: "endpoint" in emulatorOptions ? emulatorOptions.verifiesChecksums === true : true };
    const store = options.directRequests === false ? new S3Store(s3, resources.bucket, storeOptions) : new DirectS3Store(s3, resources.bucket, storeOptions);
    const tasks = typeof options.tasks === "function" ? options.tasks({ store, ...(ebs ? { ebs: { store, ebsEndpoint: ebs.endpoint, region } } : {}) }) : options.tasks;
    const applier = new Applier({
      store,
      log: options.log ?? (() => {}),
      ...(tasks ? { tasks } : {}),
      ...(options.history ? { history: options.history === "environment" ? historySettingsFromEnvironment(process.env) : options.history } : {}),
      ...(options.observer ? { observer: options.observer } : {}),
    });
    await applier.announce();
    // A marker whose action goes on in the next invocation comes back at once, as the deployed applier arranges.
    const retrySoon = async (record: SQSRecord) => {
      await poller.release(record.receiptHandle);
      await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: clientQueueUrl, ReceiptHandle: record.receiptHandle, VisibilityTimeout: 0 }));
    };
    const handler = createHandler(applier, options.metrics ?? (() => {}), undefined, retrySoon);
    const poller = new LocalPoller({
      ...options.poller,
      sqs,
      queueUrl: clientQueueUrl,
      region,
      visibilityTimeoutSeconds: resources.visibilityTimeoutSeconds,
      handler: options.wrapHandler ? options.wrapHandler(handler) : handler,
    });
    poller.start();
    stops.push(() => poller.stop());
    return {
      endpoint,
      queueUrl: resources.queueUrl,
      dlqUrl: resources.dlqUrl,
      bucket: resources.bucket,
      region,
      store,
      sqs,
      ...(ebs ? { ebs } : {}),
      ...(versioning ? { bucketVersioning: versioning } : {}),
      stop: stopAll,
    };
  } catch (error) {
    await stopAll();
    throw error;
  }
}

async function startOwnEmulator(options: LocalEmulatorOptions, stops: (() => Promise<void>)[]): Promise<string> {
  const emulator = await startEmulator(options);
  stops.push(() => emulator.stop());
  return emulator.endpoint;
}
