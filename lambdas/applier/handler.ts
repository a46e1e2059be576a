// Lambda entry: the SQS FIFO event source mapping calls this with batches of
// up to 10 messages. Thin on purpose: each record goes to the applier, and
// Powertools' FIFO processor reports the first failure of a group and every
// later record of that group as failed, so order survives a retry.

import { processPartialResponse, SqsFifoPartialProcessorAsync } from "@aws-lambda-powertools/batch";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { ChangeMessageVisibilityCommand } from "@aws-sdk/client-sqs";
import { makeS3Client, makeSqsClient } from "../aws-clients.ts";
import { APPLIER_ENDPOINT_ENV, APPLIER_ENV } from "../environment.ts";
import { customisedHttp } from "../target/http-settings.ts";
import { DirectS3Store } from "../store/direct-s3-store.ts";
import { S3Store } from "../store/s3-store.ts";
import { Applier, type MessageOutcome } from "./applier.ts";
import { BatchMemory } from "./batch-memory.ts";
import { metricsLine } from "./metrics.ts";
import { taskSettingsFromEnvironment } from "../tasks/environment.ts";
import { MarkerContinuesError } from "./markers.ts";
import { markerSendersFromEnvironment, setRolesFromEnvironment, SignedOwnership } from "./ownership.ts";
import { historySettingsFromEnvironment } from "../history/settings.ts";

export type BatchHandler = (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>;

/** Makes a message visible again at once (ChangeMessageVisibility to 0). */
export type RetrySoon = (record: SQSRecord) => Promise<void>;

export function createHandler(applier: Applier, emit: (line: string) => void = console.log, metricsNamespace?: string, retrySoon?: RetrySoon): BatchHandler {
  return async (event, context) => {
    const outcomes: MessageOutcome[] = [];
    const processor = new SqsFifoPartialProcessorAsync();
    // A set's status and owner are read once per invocation, not per message.
    const batch = new BatchMemory();
    /** Groups whose marker action goes on in the next invocation, from the record that carries it. */
    const continuing = new Map<string, number>();
    const recordHandler = async (record: SQSRecord): Promise<void> => {
      const at = event.Records.indexOf(record);
      try {
        // The next message's pack is read while this one writes its files (batch-memory.ts): reads only, and the
        // next message is checked in its turn as ever. Named before this one starts, so no stale name is taken.
        const next = event.Records[at + 1];
        batch.following(next ? { messageId: next.messageId, body: next.body } : undefined);
        outcomes.push(
          await applier.applyMessage(
            {
              messageId: record.messageId,
              groupId: record.attributes.MessageGroupId,
              body: record.body,
              attributes: stringAttributes(record.messageAttributes),
              ...(record.attributes.SenderId ? { senderId: record.attributes.SenderId } : {}),
              ...sentAtOf(record),
            },
            context ? { remainingMs: () => context.getRemainingTimeInMillis() } : undefined,
            batch,
          ),
        );
      } catch (error) {
        if (error instanceof MarkerContinuesError) continuing.set(record.attributes.MessageGroupId ?? "", at);
        throw error;
      }
    };
    try {
      const response = await processPartialResponse(event, recordHandler, processor, {
        ...(context ? { context } : {}),
        skipGroupOnError: true,
        // A batch that failed as a whole (its first message is a marker whose action goes on) is answered like any
        // partial failure: every message comes back, in order.
        throwOnFullBatchFailure: false,
      });
      // Each set's one history segment of the batch, before any message is acknowledged (batch-segments.ts).
      return withGroupsFailed(event, response, await applier.finishBatch(batch));
    } finally {
      // The marker and the rest of its group come back now rather than after the visibility timeout (a FIFO
      // group is held while any of its messages is in flight): the action goes on in the next invocation.
      const released = event.Records.filter((r, i) => i >= (continuing.get(r.attributes.MessageGroupId ?? "") ?? Number.POSITIVE_INFINITY));
      for (const record of retrySoon ? released : []) {
        await retrySoon?.(record).catch((error: unknown) => emit(JSON.stringify({ level: "warn", msg: "message not released for an early retry", messageId: record.messageId, error: String(error) })));
      }
      // Actions of markers that did not hold the stream finish inside this invocation, not in a frozen one.
      await applier.settle();
      // Packs read ahead for messages that never took them (the batch stopped early, or they were refused).
      await batch.packs.settle();
      const now = Date.now();
      const oldest = Math.min(...event.Records.map((r) => Number(r.attributes.SentTimestamp) || now), now);
      emit(metricsLine({ outcomes, lagMs: now - oldest, timestamp: now, ...(metricsNamespace ? { namespace: metricsNamespace } : {}) }));
    }
  };
}

/** The response with every message of the groups in `failed` reported failed too, in the batch's order. */
function withGroupsFailed(event: SQSEvent, response: SQSBatchResponse, failed: ReadonlySet<string>): SQSBatchResponse {
  if (failed.size === 0) return response;
  const ids = new Set(response.batchItemFailures.map((f) => f.itemIdentifier));
  for (const record of event.Records) if (failed.has(record.attributes.MessageGroupId ?? "")) ids.add(record.messageId);
  return { batchItemFailures: event.Records.filter((r) => ids.has(r.messageId)).map((r) => ({ itemIdentifier: r.messageId })) };
}

/** The String message attributes of a record (the owner's signature is one). */
/** The queue's SentTimestamp, when it names a time: the bound on how far back the message's records may count. */
function sentAtOf(record: SQSRecord): { sentAt?: number } {
  const sentAt = Number(record.attributes.SentTimestamp);
  return Number.isFinite(sentAt) && sentAt > 0 ? { sentAt } : {};
}

function stringAttributes(attributes: SQSRecord["messageAttributes"]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(attributes ?? {})) {
    if (value.dataType === "String" && value.stringValue !== undefined) out[name] = value.stringValue;
  }
  return out;
}

function fromEnvironment(env: NodeJS.ProcessEnv = process.env): BatchHandler {
  const bucket = env[APPLIER_ENV.bucket];
  if (!bucket) throw new Error(`${APPLIER_ENV.bucket} is not set: the applier does not know its target bucket`);
  const region = env.AWS_REGION ?? "us-east-1";
  const endpoint = env[APPLIER_ENDPOINT_ENV.s3];
  // S3 itself checks and keeps checksums; an S3-compatible endpoint is not trusted to.
  // Behind a proxy or with a CA bundle, every request takes the SDK's handler, which applies them.
  const s3 = makeS3Client({ region, ...(endpoint ? { endpoint } : {}) }, env);
  const storeOptions = { storeVerifiesChecksums: endpoint === undefined };
  const store = customisedHttp({}, env) ? new S3Store(s3, bucket, storeOptions) : new DirectS3Store(s3, bucket, storeOptions);
  const sqsEndpoint = env[APPLIER_ENDPOINT_ENV.sqs];
  const sqs = makeSqsClient({ region, ...(sqsEndpoint ? { endpoint: sqsEndpoint } : {}) }, env);
  const retrySoon: RetrySoon = async (record) => {
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrlOf(record.eventSourceARN, sqsEndpoint), ReceiptHandle: record.receiptHandle, VisibilityTimeout: 0 }));
  };
  const markerSenders = markerSendersFromEnvironment(env);
  const ownership = new SignedOwnership(store, { setRoles: setRolesFromEnvironment(env), ...(markerSenders ? { markerSenders } : {}) });
  const metricsNamespace = env[APPLIER_ENV.metricsNamespace] || undefined;
  const applier = new Applier({
    store,
    ownership,
    tasks: taskSettingsFromEnvironment(env, region, bucket, store),
    history: historySettingsFromEnvironment(env),
    ...(metricsNamespace ? { metricsNamespace } : {}),
  });
  return createHandler(applier, console.log, metricsNamespace, retrySoon);
}

/** The URL of the queue an event source ARN names (arn:aws:sqs:region:account:name). */
export function queueUrlOf(queueArn: string, endpoint?: string): string {
  const [, partition, , region, account, name] = queueArn.split(":");
  if (!region || !account || !name) throw new Error(`not an SQS queue ARN: ${queueArn}`);
  const host = endpoint ?? `https://sqs.${region}.amazonaws.com${partition === "aws-cn" ? ".cn" : ""}`;
  return `${host}/${account}/${name}`;
}

let cached: BatchHandler | undefined;

export const handler: BatchHandler = (event, context) => {
  cached ??= fromEnvironment();
  return cached(event, context);
};
