// A batch the local applier handles for longer than the queue's visibility
// timeout (a 3 GiB file on a loaded host) stays in flight: it is not handed
// out again, so its copies neither fill the poller's slots (starving every
// other set) nor count toward the dead-letter queue.

import { GetQueueAttributesCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { makeSqsClient } from "../../lambdas/aws-clients.ts";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { LocalPoller } from "../../lambdas/local/poller.ts";
import { eventually } from "../support/local-cloud.ts";

const REGION = "us-east-1";
let emulator: Emulator;
beforeAll(async () => {
  emulator = await startEmulator({ port: 0 });
});
afterAll(async () => {
  await emulator.stop();
});

it("keeps a batch handled past the visibility timeout in flight: handled once, and another group's batch goes meanwhile", async () => {
  const target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, queueName: "long.fifo", dlqName: "long-dlq.fifo", visibilityTimeoutSeconds: 1, maxReceiveCount: 2 });
  const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
  const handled: string[] = [];
  let releaseSlow: () => void = () => undefined;
  const slowDone = new Promise<void>((resolve) => (releaseSlow = resolve));
  const poller = new LocalPoller({
    sqs,
    queueUrl: target.queueUrl,
    region: REGION,
    waitTimeSeconds: 0,
    maxConcurrency: 2,
    visibilityTimeoutSeconds: target.visibilityTimeoutSeconds,
    handler: async (event) => {
      for (const record of event.Records) handled.push(record.body);
      if (event.Records.some((r) => r.body === "slow")) await slowDone;
      return { batchItemFailures: [] };
    },
  });
  const send = (group: string, body: string) => sqs.send(new SendMessageCommand({ QueueUrl: target.queueUrl, MessageGroupId: group, MessageDeduplicationId: body, MessageBody: body }));
  try {
    poller.start();
    await send("big", "slow");
    await eventually(async () => expect(handled).toContain("slow"), 10_000, 20);
    // Three visibility timeouts: without the batch kept in flight, "slow" came back (twice: past maxReceiveCount).
    await new Promise((resolve) => setTimeout(resolve, 3_500));
    await send("small", "fast");
    await eventually(async () => expect(handled).toContain("fast"), 10_000, 50);
    releaseSlow();
    await eventually(async () => {
      const left = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: target.queueUrl, AttributeNames: ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"] }));
      expect([left.Attributes?.ApproximateNumberOfMessages, left.Attributes?.ApproximateNumberOfMessagesNotVisible]).toEqual(["0", "0"]);
    }, 10_000, 50);
    expect(handled.filter((body) => body === "slow")).toEqual(["slow"]);
    const dead = await sqs.send(new GetQueueAttributesCommand({ QueueUrl: target.dlqUrl, AttributeNames: ["ApproximateNumberOfMessages"] }));
    expect(dead.Attributes?.ApproximateNumberOfMessages).toBe("0");
  } finally {
    releaseSlow();
    await poller.stop();
    sqs.destroy();
  }
});
