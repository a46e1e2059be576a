// Lambda entry: the SQS FIFO event source mapping calls this with batches of
// up to 10 messages. Thin on purpose: each record goes to the applier, and
// Powertools' FIFO processor reports the first failure of a group and every
// later record of that group as failed, so order survives a retry.

import { processPartialResponse, SqsFifoPartialProcessorAsync } from "@aws-lambda-powertools/batch";
import type { Context, SQSBatchResponse, SQSEvent, SQSRecord } from "aws-lambda";
import { makeS3Client } from "../aws-clients.ts";
import { S3Store } from "../store/s3-store.ts";
import { Applier, type MessageOutcome } from "./applier.ts";
import { metricsLine } from "./metrics.ts";
import { taskSettingsFromEnvironment } from "../tasks/environment.ts";

export type BatchHandler = (event: SQSEvent, context?: Context) => Promise<SQSBatchResponse>;

export function createHandler(applier: Applier, emit: (line: string) => void = console.log, metricsNamespace?: string): BatchHandler {
  return async (event, context) => {
    const outcomes: MessageOutcome[] = [];
    const processor = new SqsFifoPartialProcessorAsync();
    const recordHandler = async (record: SQSRecord): Promise<void> => {
      outcomes.push(
        await applier.applyMessage(
          { messageId: record.messageId, groupId: record.attributes.MessageGroupId, body: record.body },
          context ? { remainingMs: () => context.getRemainingTimeInMillis() } : undefined,
        ),
      );
    };
    try {
      return await processPartialResponse(event, recordHandler, processor, {
        ...(context ? { context } : {}),
        skipGroupOnError: true,
      });
    } finally {
      // Actions of markers that did not hold the stream finish inside this invocation, not in a frozen one.
      await applier.settle();
      const now = Date.now();
      const oldest = Math.min(...event.Records.map((r) => Number(r.attributes.SentTimestamp) || now), now);
      emit(metricsLine({ outcomes, lagMs: now - oldest, timestamp: now, ...(metricsNamespace ? { namespace: metricsNamespace } : {}) }));
    }
  };
}

function fromEnvironment(env: NodeJS.ProcessEnv = process.env): BatchHandler {
  const bucket = env.TIDEMARK_BUCKET;
  if (!bucket) throw new Error("TIDEMARK_BUCKET is not set: the applier does not know its target bucket");
  const region = env.AWS_REGION ?? "us-east-1";
  const endpoint = env.TIDEMARK_S3_ENDPOINT;
  const store = new S3Store(makeS3Client({ region, ...(endpoint ? { endpoint } : {}) }), bucket);
  return createHandler(new Applier({ store, tasks: taskSettingsFromEnvironment(env, region, bucket, store) }), console.log, env.TIDEMARK_METRICS_NAMESPACE || undefined);
}

let cached: BatchHandler | undefined;

export const handler: BatchHandler = (event, context) => {
  cached ??= fromEnvironment();
  return cached(event, context);
};
