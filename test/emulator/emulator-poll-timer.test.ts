// fauxqs ran its queue's timers every 20 ms while a long poll waited: an idle
// local cloud woke ~50 times a second for nothing. The queue now runs them
// only when a visibility or a delay ends; a message that comes back, or whose
// delay ends, still reaches a receive that is waiting.

import { ChangeMessageVisibilityCommand, CreateQueueCommand, ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { makeSqsClient } from "../../lambdas/aws-clients.ts";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { fauxqsPrototype } from "../../lambdas/local/fauxqs-internals.ts";

const REGION = "us-east-1";
let emulator: Emulator;
/** Runs of a queue's timers (fauxqs's processTimers, as the local cloud patched it), in this process. */
let timerRuns = 0;

beforeAll(async () => {
  emulator = await startEmulator({ port: 0 });
  const prototype = await fauxqsPrototype<{ processTimers(): void }>("./sqs/sqsStore.js", "SqsQueue", ["processTimers"]);
  const { processTimers } = prototype;
  prototype.processTimers = function (this: object) {
    timerRuns += 1;
    processTimers.call(this);
  };
});
afterAll(async () => {
  await emulator.stop();
});

it("a long poll of an empty queue runs the queue's timers only for its own two looks, not while it waits", async () => {
  const target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, queueName: "idle.fifo", dlqName: "idle-dlq.fifo" });
  const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
  try {
    timerRuns = 0;
    const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: target.queueUrl, WaitTimeSeconds: 1 }));
    expect(out.Messages ?? []).toEqual([]);
    // Its look before the wait and its look after it (each receive runs the timers first).
    expect(timerRuns).toBe(2);
  } finally {
    sqs.destroy();
  }
});

it("a message whose visibility ends comes back to a receive that waits for it", async () => {
  const target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, queueName: "back.fifo", dlqName: "back-dlq.fifo", visibilityTimeoutSeconds: 1 });
  const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
  try {
    await sqs.send(new SendMessageCommand({ QueueUrl: target.queueUrl, MessageGroupId: "g", MessageDeduplicationId: "m1", MessageBody: "m1" }));
    const first = await sqs.send(new ReceiveMessageCommand({ QueueUrl: target.queueUrl }));
    expect(first.Messages?.map((m) => m.Body)).toEqual(["m1"]);
    // Not deleted: its visibility ends while this receive waits, and the waiting receive gets it.
    const again = await sqs.send(new ReceiveMessageCommand({ QueueUrl: target.queueUrl, WaitTimeSeconds: 20, MessageSystemAttributeNames: ["ApproximateReceiveCount"] }));
    expect(again.Messages?.map((m) => [m.Body, m.Attributes?.ApproximateReceiveCount])).toEqual([["m1", "2"]]);
  } finally {
    sqs.destroy();
  }
});

it("a delayed message sent while a receive waits reaches that receive once its delay ends", async () => {
  const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
  try {
    const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "delayed" }))).QueueUrl ?? "";
    timerRuns = 0;
    const waiting = sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 20 }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: "later", DelaySeconds: 1 }));
    expect((await waiting).Messages?.map((m) => m.Body)).toEqual(["later"]);
    // The receive's look, the timer armed for the delay's end, and the look it woke: a receive not woken gets the
    // message only at its wait's end, with its two looks (no timed assertion: the count says which).
    expect(timerRuns).toBeGreaterThan(2);
  } finally {
    sqs.destroy();
  }
});

it("a receive waiting while an in-flight message's visibility is shortened gets it when the new visibility ends", async () => {
  const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
  try {
    const queueUrl = (await sqs.send(new CreateQueueCommand({ QueueName: "shortened" }))).QueueUrl ?? "";
    await sqs.send(new SendMessageCommand({ QueueUrl: queueUrl, MessageBody: "m" }));
    const taken = await sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, VisibilityTimeout: 30 }));
    const receiptHandle = taken.Messages?.[0]?.ReceiptHandle ?? "";
    const waiting = sqs.send(new ReceiveMessageCommand({ QueueUrl: queueUrl, WaitTimeSeconds: 20 }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    timerRuns = 0;
    await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queueUrl, ReceiptHandle: receiptHandle, VisibilityTimeout: 1 }));
    expect((await waiting).Messages?.map((m) => m.Body)).toEqual(["m"]);
    // The timer at the new visibility's end, and the look it woke; not woken, the receive looks once, at its wait's end.
    expect(timerRuns).toBeGreaterThan(1);
  } finally {
    sqs.destroy();
  }
});
