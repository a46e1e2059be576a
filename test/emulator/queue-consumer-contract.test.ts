// The local poller passes the queue consumer contract on the emulator (queues
// with the deployed stack's attributes) and, with TIDEMARK_TEST_AWS=1 and
// credentials, on real SQS queues.

import { ChangeMessageVisibilityCommand, DeleteMessageCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { makeSqsClient } from "../../lambdas/aws-clients.ts";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { LocalPoller } from "../../lambdas/local/poller.ts";
import { AWS_REGION, awsSkipReason, createAwsTestTarget } from "../support/aws-account.ts";
import { queueConsumerContract } from "../support/queue-consumer-contract.ts";

const REGION = "us-east-1";
let emulator: Emulator;
let queueCount = 0;
beforeAll(async () => {
  emulator = await startEmulator({ port: 0 });
});
afterAll(async () => {
  await emulator.stop();
});

queueConsumerContract("the local poller on the emulator", async (options) => {
  queueCount += 1;
  const target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, queueName: `q${queueCount}.fifo`, dlqName: `q${queueCount}-dlq.fifo`, ...options });
  const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
  const attributes = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: target.queueUrl, AttributeNames: ["QueueArn"] }));
  return {
    sqs,
    region: REGION,
    queueUrl: target.queueUrl,
    queueArn: attributes.Attributes?.QueueArn ?? "",
    // As `tidemark local` runs it: the poller names the queue's ARN from its URL.
    pollerIsToldArn: false,
    dlqUrl: target.dlqUrl,
    async remove() {
      sqs.destroy();
    },
  };
});

queueConsumerContract(
  "the local poller on SQS",
  async (options) => {
    const target = await createAwsTestTarget(options);
    return { sqs: target.sqs, region: AWS_REGION, queueUrl: target.queueUrl, queueArn: target.queueArn, pollerIsToldArn: true, dlqUrl: target.dlqUrl, remove: () => target.remove() };
  },
  await awsSkipReason(),
);

it("rejects a batch size a FIFO event source mapping would not accept", () => {
  expect(() => new LocalPoller({ sqs: makeSqsClient({ region: REGION, endpoint: emulator.endpoint }), queueUrl: "http://127.0.0.1:1/0/q.fifo", region: REGION, handler: async () => undefined, batchSize: 11 })).toThrow(
    /batchSize must be 1\.\.10/,
  );
});

it("hands out up to 10 waiting messages of one group per receive, as SQS does, and the next ones once they are deleted", async () => {
  const target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, queueName: "batches.fifo", dlqName: "batches-dlq.fifo" });
  const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
  try {
    for (let i = 0; i < 12; i++) {
      await sqs.send(new SendMessageCommand({ QueueUrl: target.queueUrl, MessageGroupId: "g", MessageDeduplicationId: `d${i}`, MessageBody: `m${i}` }));
    }
    const receive = () => sqs.send(new ReceiveMessageCommand({ QueueUrl: target.queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0 }));
    const first = (await receive()).Messages ?? [];
    expect(first.map((m) => m.Body)).toEqual(["m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "m9"]);
    // The group is locked while any of its messages is in flight.
    expect((await receive()).Messages ?? []).toEqual([]);
    for (const m of first.slice(0, 9)) await sqs.send(new DeleteMessageCommand({ QueueUrl: target.queueUrl, ReceiptHandle: m.ReceiptHandle }));
    expect((await receive()).Messages ?? []).toEqual([]);
    // Visible again at once, before the rest: it comes back ahead of them.
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: target.queueUrl, ReceiptHandle: first[9]?.ReceiptHandle, VisibilityTimeout: 0 }));
    expect(((await receive()).Messages ?? []).map((m) => m.Body)).toEqual(["m9", "m10", "m11"]);
  } finally {
    sqs.destroy();
  }
});
