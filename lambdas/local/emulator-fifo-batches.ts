// fauxqs 2.x hands out at most one message of a FIFO message group per
// receive (its dequeueFifo stops a group after its first message), where SQS
// returns up to MaxNumberOfMessages of one group, in order, and Lambda's event
// source mapping hands them to the function as one batch. With one message per
// batch the local cloud paid an applier invocation's fixed costs per message.
// It also puts messages whose visibility ends (timeout, or a visibility of 0)
// back at the front of their group one at a time, so several of one group come
// back in reverse order. This replaces the receive and restores each group's
// order (SQS's sequence numbers) after either; the group stays locked while any
// of its messages is in flight, as before.

import { randomUUID } from "node:crypto";
import { fauxqsPrototype } from "./fauxqs-internals.ts";

/** The parts of a fauxqs queue message (dist/sqs/sqsTypes.d.ts) the receive reads and writes. */
interface QueueMessage {
  readonly messageId: string;
  readonly body: string;
  readonly md5OfBody: string;
  readonly md5OfMessageAttributes?: string;
  readonly messageAttributes: Record<string, unknown>;
  readonly messageGroupId?: string;
  readonly sequenceNumber?: string;
  approximateReceiveCount: number;
  approximateFirstReceiveTimestamp?: number;
}

interface InflightEntry {
  readonly message: QueueMessage;
  readonly receiptHandle: string;
  visibilityDeadline: number;
}

interface ReceivedMessage {
  MessageId: string;
  ReceiptHandle: string;
  MD5OfBody: string;
  Body: string;
  MD5OfMessageAttributes?: string;
  MessageAttributes?: Record<string, unknown>;
}

interface DeadLetterQueue {
  enqueue(message: QueueMessage): void;
}

/** fauxqs's SqsQueue (dist/sqs/sqsStore.js), as far as the receive uses it. */
interface EmulatorQueue {
  readonly name: string;
  readonly attributes: Record<string, string>;
  readonly fifoMessages: Map<string, QueueMessage[]>;
  readonly fifoLockedGroups: Map<string, number>;
  readonly inflightMessages: Map<string, InflightEntry>;
  readonly persistence?: {
    deleteMessage(messageId: string): void;
    updateMessageInflight(messageId: string, receiptHandle: string, visibilityDeadline: number, receiveCount: number, firstReceiveTimestamp: number | undefined): void;
  };
  readonly spy?: { addMessage(message: Record<string, unknown>): void };
  dequeueFifo(maxCount: number, visibilityTimeoutOverride: number | undefined, dlqResolver: ((arn: string) => DeadLetterQueue | undefined) | undefined): ReceivedMessage[];
  processTimers(): void;
  changeVisibility(receiptHandle: string, timeoutSeconds: number): void;
}

/** What fauxqs's group key is for a message sent without a group (it never is on a FIFO queue). */
const DEFAULT_GROUP = "__default";

function redrive(policy: string | undefined): { maxReceiveCount: number; deadLetterTargetArn?: string } {
  if (!policy) return { maxReceiveCount: Number.POSITIVE_INFINITY };
  try {
    const parsed = JSON.parse(policy) as { maxReceiveCount?: unknown; deadLetterTargetArn?: unknown };
    return {
      maxReceiveCount: Number(parsed.maxReceiveCount ?? Number.POSITIVE_INFINITY),
      ...(typeof parsed.deadLetterTargetArn === "string" ? { deadLetterTargetArn: parsed.deadLetterTargetArn } : {}),
    };
  } catch {
    return { maxReceiveCount: Number.POSITIVE_INFINITY };
  }
}

/** A group's ready messages in send order (FIFO sequence numbers are zero-padded: text order is number order). */
function restoreOrder(messages: QueueMessage[] | undefined): void {
  messages?.sort((a, b) => ((a.sequenceNumber ?? "") < (b.sequenceNumber ?? "") ? -1 : (a.sequenceNumber ?? "") > (b.sequenceNumber ?? "") ? 1 : 0));
}

/**
 * SQS's FIFO receive: messages of the first unlocked group, in order, up to
 * maxCount, then of the next; each one received locks its group until it is
 * deleted or visible again. A message past the redrive policy's
 * maxReceiveCount goes to the dead-letter queue instead, and the group goes on.
 */
function dequeueFifo(this: EmulatorQueue, maxCount: number, visibilityTimeoutOverride: number | undefined, dlqResolver: ((arn: string) => DeadLetterQueue | undefined) | undefined): ReceivedMessage[] {
  this.processTimers();
  const visibilityTimeout = visibilityTimeoutOverride ?? Number.parseInt(this.attributes.VisibilityTimeout ?? "30", 10);
  const { maxReceiveCount, deadLetterTargetArn } = redrive(this.attributes.RedrivePolicy);
  const count = Math.min(maxCount, 10);
  const received: ReceivedMessage[] = [];
  for (const [group, messages] of this.fifoMessages) {
    if (received.length >= count) break;
    if (this.fifoLockedGroups.has(group)) continue;
    while (received.length < count) {
      const message = messages.shift();
      if (!message) break;
      message.approximateReceiveCount += 1;
      message.approximateFirstReceiveTimestamp ??= Date.now();
      const deadLetters = deadLetterTargetArn && message.approximateReceiveCount > maxReceiveCount ? dlqResolver?.(deadLetterTargetArn) : undefined;
      if (deadLetters) {
        this.spy?.addMessage({ service: "sqs", queueName: this.name, messageId: message.messageId, body: message.body, messageAttributes: message.messageAttributes, status: "dlq", timestamp: Date.now() });
        this.persistence?.deleteMessage(message.messageId);
        deadLetters.enqueue(message);
        continue;
      }
      const receiptHandle = randomUUID();
      const visibilityDeadline = Date.now() + visibilityTimeout * 1000;
      this.inflightMessages.set(receiptHandle, { message, receiptHandle, visibilityDeadline });
      this.persistence?.updateMessageInflight(message.messageId, receiptHandle, visibilityDeadline, message.approximateReceiveCount, message.approximateFirstReceiveTimestamp);
      received.push({
        MessageId: message.messageId,
        ReceiptHandle: receiptHandle,
        MD5OfBody: message.md5OfBody,
        Body: message.body,
        ...(message.md5OfMessageAttributes ? { MD5OfMessageAttributes: message.md5OfMessageAttributes } : {}),
        ...(Object.keys(message.messageAttributes).length > 0 ? { MessageAttributes: message.messageAttributes } : {}),
      });
      this.fifoLockedGroups.set(group, (this.fifoLockedGroups.get(group) ?? 0) + 1);
    }
    if (messages.length === 0) this.fifoMessages.delete(group);
  }
  return received;
}

let patched = false;

/** Patches fauxqs's queue class once per process, before an emulator serves a request. */
export async function receiveFifoBatches(): Promise<void> {
  if (patched) return;
  const prototype = await fauxqsPrototype<EmulatorQueue>("./sqs/sqsStore.js", "SqsQueue", ["dequeueFifo", "processTimers", "changeVisibility"]);
  const { processTimers, changeVisibility } = prototype;
  prototype.dequeueFifo = dequeueFifo;
  prototype.processTimers = function (this: EmulatorQueue) {
    const inflight = new Map([...this.inflightMessages].map(([handle, entry]) => [handle, entry.message.messageGroupId ?? DEFAULT_GROUP]));
    processTimers.call(this);
    // Messages whose visibility ended went back to the front of their group one by one.
    const returned = new Set([...inflight].filter(([handle]) => !this.inflightMessages.has(handle)).map(([, group]) => group));
    for (const group of returned) restoreOrder(this.fifoMessages.get(group));
  };
  prototype.changeVisibility = function (this: EmulatorQueue, receiptHandle: string, timeoutSeconds: number) {
    const group = this.inflightMessages.get(receiptHandle)?.message.messageGroupId;
    changeVisibility.call(this, receiptHandle, timeoutSeconds);
    if (group !== undefined && !this.inflightMessages.has(receiptHandle)) restoreOrder(this.fifoMessages.get(group));
  };
  patched = true;
}
