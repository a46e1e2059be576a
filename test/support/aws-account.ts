// The contract suites' real-AWS run: only with TIDEMARK_TEST_AWS=1 and
// credentials the SDK finds (environment, profile, instance role). Each run
// makes its own FIFO queue pair and buckets, named tidemark-contract-* at
// random, and removes them.

import { randomUUID } from "node:crypto";
import { BucketLocationConstraint, CreateBucketCommand, DeleteBucketCommand, DeleteObjectsCommand, ListObjectVersionsCommand, type S3Client } from "@aws-sdk/client-s3";
import { CreateQueueCommand, DeleteQueueCommand, GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { makeS3Client, makeSqsClient } from "../../lambdas/aws-clients.ts";

export const AWS_REGION = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1";

/** Why the real-AWS run is skipped, or undefined when it runs. */
export async function awsSkipReason(): Promise<string | undefined> {
  if (process.env.TIDEMARK_TEST_AWS !== "1") return "real AWS only with TIDEMARK_TEST_AWS=1";
  const sqs = makeSqsClient({ region: AWS_REGION });
  try {
    await sqs.config.credentials();
    return undefined;
  } catch (error) {
    return `TIDEMARK_TEST_AWS=1 but no AWS credentials: ${error instanceof Error ? error.message : String(error)}`;
  } finally {
    sqs.destroy();
  }
}

export interface AwsTestBucket {
  readonly s3: S3Client;
  readonly bucket: string;
  /** Deletes the bucket with every object version in it. */
  remove(): Promise<void>;
}

const testName = () => `tidemark-contract-${randomUUID().slice(0, 8)}`;

export async function createAwsTestBucket(name = testName()): Promise<AwsTestBucket> {
  const s3 = makeS3Client({ region: AWS_REGION });
  // us-east-1 takes no location constraint; every other region must name itself.
  const location = AWS_REGION === "us-east-1" ? undefined : Object.values(BucketLocationConstraint).find((c) => c === AWS_REGION);
  await s3.send(new CreateBucketCommand({ Bucket: name, ...(location ? { CreateBucketConfiguration: { LocationConstraint: location } } : {}) }));
  return {
    s3,
    bucket: name,
    async remove() {
      for (;;) {
        const listed = await s3.send(new ListObjectVersionsCommand({ Bucket: name }));
        const objects = [...(listed.Versions ?? []), ...(listed.DeleteMarkers ?? [])].map((v) => ({ Key: v.Key ?? "", VersionId: v.VersionId }));
        if (objects.length === 0) break;
        await s3.send(new DeleteObjectsCommand({ Bucket: name, Delete: { Objects: objects } }));
      }
      await s3.send(new DeleteBucketCommand({ Bucket: name }));
      s3.destroy();
    },
  };
}

export interface AwsTestTarget {
  readonly sqs: SQSClient;
  readonly s3: S3Client;
  readonly queueUrl: string;
  readonly queueArn: string;
  readonly dlqUrl: string;
  readonly bucket: string;
  /** Deletes the queues and the bucket with everything in it. */
  remove(): Promise<void>;
}

/** A FIFO queue with the deployed stack's attributes (infra/constructs/replication-queue.ts), its FIFO DLQ, and a bucket. */
export async function createAwsTestTarget(options: { visibilityTimeoutSeconds?: number; maxReceiveCount?: number } = {}): Promise<AwsTestTarget> {
  const sqs = makeSqsClient({ region: AWS_REGION });
  const name = testName();
  const fifo = { FifoQueue: "true", DeduplicationScope: "messageGroup", FifoThroughputLimit: "perMessageGroupId" };
  const dlqUrl = (await sqs.send(new CreateQueueCommand({ QueueName: `${name}-dlq.fifo`, Attributes: fifo }))).QueueUrl ?? "";
  const arnOf = async (url: string) => (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["QueueArn"] }))).Attributes?.QueueArn ?? "";
  const queueUrl =
    (
      await sqs.send(
        new CreateQueueCommand({
          QueueName: `${name}.fifo`,
          Attributes: {
            ...fifo,
            VisibilityTimeout: String(options.visibilityTimeoutSeconds ?? 30),
            RedrivePolicy: JSON.stringify({ deadLetterTargetArn: await arnOf(dlqUrl), maxReceiveCount: options.maxReceiveCount ?? 5 }),
          },
        }),
      )
    ).QueueUrl ?? "";
  const bucket = await createAwsTestBucket(name);
  return {
    sqs,
    s3: bucket.s3,
    queueUrl,
    queueArn: await arnOf(queueUrl),
    dlqUrl,
    bucket: bucket.bucket,
    async remove() {
      await bucket.remove();
      await sqs.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
      await sqs.send(new DeleteQueueCommand({ QueueUrl: dlqUrl }));
      sqs.destroy();
    },
  };
}
