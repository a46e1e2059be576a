// The replication queue and its dead-letter queue as both the stack
// (infra/constructs/replication-queue.ts) and the local cloud
// (lambdas/local/emulator.ts) create them: one definition, so what an agent
// or a console user sends behaves the same locally and on AWS. The names are
// SQS's queue attributes, which CloudFormation's AWS::SQS::Queue shares.

/** What the two queues share. */
export const REPLICATION_QUEUE = {
  /** One message group per set: order holds within a set. */
  fifoQueue: true,
  /** Markers sent from the console carry no deduplication id; content-based deduplication covers them. The agent always sends its own id. */
  contentBasedDeduplication: true,
  /** High-throughput mode: deduplication and the throughput limit per message group (per set). */
  deduplicationScope: "messageGroup",
  fifoThroughputLimit: "perMessageGroupId",
  /** SQS's largest message; the agent packs well under it (MAX_MESSAGE_BYTES in contract/wire.ts). */
  maximumMessageSizeBytes: 1_048_576,
  /** 14 days, SQS's longest: an outage of days on either side loses nothing queued. */
  messageRetentionSeconds: 14 * 24 * 3600,
  /** Receives of one message before it moves to the dead-letter queue. */
  maxReceiveCount: 5,
} as const;

/** The queue's and the dead-letter queue's names for a name prefix ("tidemark" -> tidemark.fifo, tidemark-dlq.fifo). */
export function replicationQueueNames(prefix: string): { readonly queue: string; readonly deadLetterQueue: string } {
  return { queue: `${prefix}.fifo`, deadLetterQueue: `${prefix}-dlq.fifo` };
}

/** The dead-letter queue's attributes, as CreateQueue takes them. */
export function deadLetterQueueAttributes(): Record<string, string> {
  return {
    FifoQueue: String(REPLICATION_QUEUE.fifoQueue),
    ContentBasedDeduplication: String(REPLICATION_QUEUE.contentBasedDeduplication),
    DeduplicationScope: REPLICATION_QUEUE.deduplicationScope,
    FifoThroughputLimit: REPLICATION_QUEUE.fifoThroughputLimit,
    MaximumMessageSize: String(REPLICATION_QUEUE.maximumMessageSizeBytes),
    MessageRetentionPeriod: String(REPLICATION_QUEUE.messageRetentionSeconds),
  };
}

/** The replication queue's attributes, as CreateQueue takes them: the shared ones, its visibility timeout and its redrive policy. */
export function replicationQueueAttributes(options: {
  readonly visibilityTimeoutSeconds: number;
  readonly deadLetterTargetArn: string;
  /** @default REPLICATION_QUEUE.maxReceiveCount */
  readonly maxReceiveCount?: number;
}): Record<string, string> {
  return {
    ...deadLetterQueueAttributes(),
    VisibilityTimeout: String(options.visibilityTimeoutSeconds),
    RedrivePolicy: JSON.stringify({ deadLetterTargetArn: options.deadLetterTargetArn, maxReceiveCount: options.maxReceiveCount ?? REPLICATION_QUEUE.maxReceiveCount }),
  };
}
