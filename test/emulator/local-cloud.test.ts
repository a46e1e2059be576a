// The local cloud's parts on their own: the emulator with the target's
// resources, and the poller's event source mapping semantics for FIFO.

import { createServer, type Server } from "node:net";
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { SQSBatchResponse, SQSEvent } from "aws-lambda";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { deadLetterQueueAttributes, replicationQueueAttributes } from "../../contract/queue.ts";
import { makeSqsClient } from "../../lambdas/aws-clients.ts";
import { ensureTargetResources, PortInUseError, startEmulator, type Emulator, type TargetResources } from "../../lambdas/local/emulator.ts";
import { LocalPoller } from "../../lambdas/local/poller.ts";
import { eventually } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const REGION = "us-east-1";

describe("local emulator", () => {
  it("creates the FIFO queue, its FIFO DLQ and the bucket, and finds them again", async () => {
    const emulator = await startEmulator({ port: 0 });
    const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
    try {
      const first = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, maxReceiveCount: 3 });
      const again = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, maxReceiveCount: 3 });
      expect(again).toEqual(first);
      expect(first.queueUrl).toBe(`${emulator.endpoint}/000000000000/tidemark.fifo`);
      const attributes = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: first.queueUrl, AttributeNames: ["All"] }))).Attributes ?? {};
      expect(attributes.FifoQueue).toBe("true");
      const redrive = JSON.parse(attributes.RedrivePolicy ?? "{}") as { deadLetterTargetArn?: string; maxReceiveCount?: number | string };
      expect(redrive.deadLetterTargetArn).toMatch(/tidemark-dlq\.fifo$/);
      expect(Number(redrive.maxReceiveCount)).toBe(3);
      const dlq = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: first.dlqUrl, AttributeNames: ["All"] }))).Attributes;
      expect(dlq?.FifoQueue).toBe("true");
      // The stack's definition, shared (contract/queue.ts; test/infra/stack.test.ts holds the template to it).
      const { RedrivePolicy, ...shared } = replicationQueueAttributes({ visibilityTimeoutSeconds: 30, deadLetterTargetArn: redrive.deadLetterTargetArn ?? "", maxReceiveCount: 3 });
      expect(attributes).toMatchObject(shared);
      expect(JSON.parse(RedrivePolicy ?? "{}")).toEqual({ ...redrive, maxReceiveCount: Number(redrive.maxReceiveCount) });
      expect(dlq).toMatchObject(deadLetterQueueAttributes());
    } finally {
      sqs.destroy();
      await emulator.stop();
    }
  });

  it("refuses a port that is taken, saying so", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      await expect(startEmulator({ port })).rejects.toThrow(PortInUseError);
      await expect(startEmulator({ port })).rejects.toThrow(`port ${port} on 127.0.0.1 is already in use`);
    } finally {
      blocker.close();
    }
  });

  it("takes a marker sent as the README shows, without a deduplication id, on a queue kept from before content-based deduplication", async () => {
    const emulator = await startEmulator({ port: 0 });
    const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
    try {
      // The local queue of an earlier release: FIFO without content-based deduplication refuses such a send.
      const earlier = await sqs.send(new CreateQueueCommand({ QueueName: "tidemark.fifo", Attributes: { FifoQueue: "true" } }));
      const marker = JSON.stringify({ v: 1, set: "db", task: { id: "before-upgrade-1", action: "snapshot" } });
      await expect(sqs.send(new SendMessageCommand({ QueueUrl: earlier.QueueUrl, MessageGroupId: "db", MessageBody: marker }))).rejects.toThrow(/ContentBasedDeduplication/);

      const target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION });
      const attributes = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: target.queueUrl, AttributeNames: ["ContentBasedDeduplication"] }))).Attributes;
      expect(attributes?.ContentBasedDeduplication).toBe("true");
      await sqs.send(new SendMessageCommand({ QueueUrl: target.queueUrl, MessageGroupId: "db", MessageBody: marker }));
      // The same body again within the window is the same message, as on AWS.
      await sqs.send(new SendMessageCommand({ QueueUrl: target.queueUrl, MessageGroupId: "db", MessageBody: marker }));
      const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: target.queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
      expect(out.Messages?.map((m) => m.Body)).toEqual([marker]);
    } finally {
      sqs.destroy();
      await emulator.stop();
    }
  });

  it("keeps queued messages across a restart on the same data dir", async () => {
    const dir = tempDir();
    let emulator = await startEmulator({ port: 0, dataDir: dir.path });
    try {
      let target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION });
      let sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
      await sqs.send(new SendMessageCommand({ QueueUrl: target.queueUrl, MessageGroupId: "g", MessageDeduplicationId: "d1", MessageBody: "kept" }));
      sqs.destroy();
      await emulator.stop();

      emulator = await startEmulator({ port: 0, dataDir: dir.path });
      target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION });
      sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
      const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: target.queueUrl, WaitTimeSeconds: 1 }));
      expect(out.Messages?.map((m) => m.Body)).toEqual(["kept"]);
      sqs.destroy();
    } finally {
      await emulator.stop();
      dir.remove();
    }
  });
});

describe("local poller", () => {
  let emulator: Emulator;
  let sqs: SQSClient;
  let poller: LocalPoller | undefined;
  let queueCount = 0;

  beforeAll(async () => {
    emulator = await startEmulator({ port: 0 });
    sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
  });
  afterEach(async () => {
    await poller?.stop();
    poller = undefined;
  });
  afterAll(async () => {
    sqs.destroy();
    await emulator.stop();
  });

  /** A fresh queue pair per test, so leftovers of one test never reach another. */
  async function freshQueue(options: { visibilityTimeoutSeconds?: number; maxReceiveCount?: number } = {}): Promise<TargetResources> {
    queueCount += 1;
    return ensureTargetResources({
      endpoint: emulator.endpoint,
      region: REGION,
      queueName: `q${queueCount}.fifo`,
      dlqName: `q${queueCount}-dlq.fifo`,
      visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 1,
      maxReceiveCount: options.maxReceiveCount ?? 5,
    });
  }

  async function send(queueUrl: string, group: string, bodies: string[]): Promise<void> {
    for (const body of bodies) {
      await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageGroupId: group, MessageDeduplicationId: `${group}-${body}`, MessageBody: body }));
    }
  }

  it("hands each group's messages to the handler in order, with Lambda's record shape", async () => {
    const { queueUrl } = await freshQueue();
    await send(queueUrl, "a", ["a1", "a2", "a3"]);
    await send(queueUrl, "b", ["b1", "b2"]);
    const seen: { body: string; group: string | undefined; source: string }[] = [];
    poller = new LocalPoller({
      sqs,
      queueUrl,
      region: REGION,
      waitTimeSeconds: 0,
      handler: async (event: SQSEvent) => {
        for (const r of event.Records) seen.push({ body: r.body, group: r.attributes.MessageGroupId, source: r.eventSourceARN });
        return { batchItemFailures: [] };
      },
    });
    poller.start();
    await eventually(async () => expect(seen).toHaveLength(5), 10_000, 50);
    expect(seen.filter((s) => s.group === "a").map((s) => s.body)).toEqual(["a1", "a2", "a3"]);
    expect(seen.filter((s) => s.group === "b").map((s) => s.body)).toEqual(["b1", "b2"]);
    expect(seen[0]?.source).toBe(`arn:aws:sqs:${REGION}:000000000000:q${queueCount}.fifo`);
    await poller.stop();
    // Handled messages were deleted: nothing comes back.
    const left = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 0, MaxNumberOfMessages: 10 }));
    expect(left.Messages ?? []).toEqual([]);
  });

  it("redelivers the failed message and the rest of its group, in order, after the visibility timeout", async () => {
    const { queueUrl } = await freshQueue({ visibilityTimeoutSeconds: 1 });
    await send(queueUrl, "g", ["m1", "m2", "m3"]);
    const handled: string[] = [];
    let failedOnce = false;
    poller = new LocalPoller({
      sqs,
      queueUrl,
      region: REGION,
      waitTimeSeconds: 0,
      handler: async (event: SQSEvent): Promise<SQSBatchResponse> => {
        const failures: { itemIdentifier: string }[] = [];
        for (const r of event.Records) {
          if (failures.length > 0 || (r.body === "m2" && !failedOnce)) {
            if (r.body === "m2") failedOnce = true;
            failures.push({ itemIdentifier: r.messageId });
            continue;
          }
          handled.push(r.body);
        }
        return { batchItemFailures: failures };
      },
    });
    poller.start();
    await eventually(async () => expect(handled).toEqual(["m1", "m2", "m3"]), 15_000, 100);
  });

  it("fails the whole batch when the handler throws", async () => {
    const { queueUrl } = await freshQueue({ visibilityTimeoutSeconds: 1 });
    await send(queueUrl, "g", ["x"]);
    let calls = 0;
    const errors: string[] = [];
    poller = new LocalPoller({
      sqs,
      queueUrl,
      region: REGION,
      waitTimeSeconds: 0,
      onError: (error) => errors.push(error.message),
      handler: async () => {
        calls += 1;
        if (calls === 1) throw new Error("boom");
        return { batchItemFailures: [] };
      },
    });
    poller.start();
    await eventually(async () => expect(calls).toBe(2), 15_000, 100);
    expect(errors).toContain("boom");
  });

  it("moves a message that keeps failing to the dead-letter queue", async () => {
    const { queueUrl, dlqUrl } = await freshQueue({ visibilityTimeoutSeconds: 1, maxReceiveCount: 2 });
    await send(queueUrl, "g", ["poison"]);
    let attempts = 0;
    poller = new LocalPoller({
      sqs,
      queueUrl,
      region: REGION,
      waitTimeSeconds: 0,
      handler: async (event: SQSEvent) => {
        attempts += event.Records.length;
        return { batchItemFailures: event.Records.map((r) => ({ itemIdentifier: r.messageId })) };
      },
    });
    poller.start();
    await eventually(
      async () => {
        const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: dlqUrl, WaitTimeSeconds: 0 }));
        expect(out.Messages?.map((m) => m.Body)).toEqual(["poison"]);
      },
      20_000,
      250,
    );
    expect(attempts).toBe(2);
  });

  it("rejects a batch size a FIFO event source mapping would not accept", () => {
    expect(() => new LocalPoller({ sqs, queueUrl: "http://127.0.0.1:1/0/q.fifo", region: REGION, handler: async () => undefined, batchSize: 11 })).toThrow(
      /batchSize must be 1\.\.10/,
    );
  });
});
