// The local poller passes the queue consumer contract on the emulator (queues
// with the deployed stack's attributes) and, with TIDEMARK_TEST_AWS=1 and
// credentials, on real SQS queues.

import { GetQueueAttributesCommand } from "@aws-sdk/client-sqs";
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
