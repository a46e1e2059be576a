// The replication stream: one SQS FIFO queue (a message group per set) in
// high-throughput mode, with a FIFO dead-letter queue behind it.

import { Duration } from "aws-cdk-lib";
import { DeduplicationScope, FifoThroughputLimit, Queue, QueueEncryption } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";

/** SQS's largest message; the agent packs well under it (contract/wire.ts). */
export const MAX_MESSAGE_SIZE_BYTES = 1_048_576;

/** AWS's advice for a queue a Lambda function reads: at least six times the function's timeout. */
export const VISIBILITY_TIMEOUT_FACTOR = 6;

export interface ReplicationQueueProps {
  /** Queue name without ".fifo"; the DLQ is "<name>-dlq.fifo". */
  readonly queueName: string;
  /** The timeout of the function that consumes the queue. */
  readonly consumerTimeout: Duration;
  /**
   * Receives before a message moves to the dead-letter queue.
   * @default 5
   */
  readonly maxReceiveCount?: number;
}

export class ReplicationQueue extends Construct {
  readonly queue: Queue;
  readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: ReplicationQueueProps) {
    super(scope, id);
    const retention = Duration.days(14);
    const common = {
      fifo: true,
      // Markers sent from the console carry no deduplication id; content-based
      // deduplication covers them. The agent always sends its own id.
      contentBasedDeduplication: true,
      deduplicationScope: DeduplicationScope.MESSAGE_GROUP,
      fifoThroughputLimit: FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
      maxMessageSizeBytes: MAX_MESSAGE_SIZE_BYTES,
      retentionPeriod: retention,
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    };
    this.deadLetterQueue = new Queue(this, "DeadLetterQueue", { ...common, queueName: `${props.queueName}-dlq.fifo` });
    this.queue = new Queue(this, "Queue", {
      ...common,
      queueName: `${props.queueName}.fifo`,
      visibilityTimeout: Duration.seconds(props.consumerTimeout.toSeconds() * VISIBILITY_TIMEOUT_FACTOR),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: props.maxReceiveCount ?? 5 },
    });
  }
}
