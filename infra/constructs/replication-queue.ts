// The replication stream: one SQS FIFO queue (a message group per set) in
// high-throughput mode, with a FIFO dead-letter queue behind it.

import { Duration } from "aws-cdk-lib";
import { DeduplicationScope, FifoThroughputLimit, Queue, QueueEncryption } from "aws-cdk-lib/aws-sqs";
import { Construct } from "constructs";
import { REPLICATION_QUEUE, replicationQueueNames } from "../../contract/queue.ts";

/** CDK's names of the shared definition's values (contract/queue.ts). */
const DEDUPLICATION_SCOPE = { messageGroup: DeduplicationScope.MESSAGE_GROUP, queue: DeduplicationScope.QUEUE } as const;
const FIFO_THROUGHPUT_LIMIT = { perMessageGroupId: FifoThroughputLimit.PER_MESSAGE_GROUP_ID, perQueue: FifoThroughputLimit.PER_QUEUE } as const;

/** AWS's advice for a queue a Lambda function reads: at least six times the function's timeout. */
export const VISIBILITY_TIMEOUT_FACTOR = 6;

export interface ReplicationQueueProps {
  /** Queue name without ".fifo"; the DLQ is "<name>-dlq.fifo". */
  readonly queueName: string;
  /** The timeout of the function that consumes the queue. */
  readonly consumerTimeout: Duration;
  /**
   * Receives before a message moves to the dead-letter queue.
   * @default REPLICATION_QUEUE.maxReceiveCount (5)
   */
  readonly maxReceiveCount?: number;
}

export class ReplicationQueue extends Construct {
  readonly queue: Queue;
  readonly deadLetterQueue: Queue;

  constructor(scope: Construct, id: string, props: ReplicationQueueProps) {
    super(scope, id);
    const names = replicationQueueNames(props.queueName);
    // The queues the local cloud creates too (contract/queue.ts); encryption and the HTTPS-only policy are AWS's alone.
    const common = {
      fifo: REPLICATION_QUEUE.fifoQueue,
      contentBasedDeduplication: REPLICATION_QUEUE.contentBasedDeduplication,
      deduplicationScope: DEDUPLICATION_SCOPE[REPLICATION_QUEUE.deduplicationScope],
      fifoThroughputLimit: FIFO_THROUGHPUT_LIMIT[REPLICATION_QUEUE.fifoThroughputLimit],
      maxMessageSizeBytes: REPLICATION_QUEUE.maximumMessageSizeBytes,
      retentionPeriod: Duration.seconds(REPLICATION_QUEUE.messageRetentionSeconds),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    };
    this.deadLetterQueue = new Queue(this, "DeadLetterQueue", { ...common, queueName: names.deadLetterQueue });
    this.queue = new Queue(this, "Queue", {
      ...common,
      queueName: names.queue,
      visibilityTimeout: Duration.seconds(props.consumerTimeout.toSeconds() * VISIBILITY_TIMEOUT_FACTOR),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: props.maxReceiveCount ?? REPLICATION_QUEUE.maxReceiveCount },
    });
  }
}
