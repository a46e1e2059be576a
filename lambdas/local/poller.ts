// Drives an SQS batch handler the way Lambda's event source mapping does for a
// FIFO queue: batches of at most 10, one batch per message group at a time,
// partial batch failures (failed messages stay in flight and come back after
// the visibility timeout; the redrive policy moves them to the DLQ).

import { DeleteMessageBatchCommand, ReceiveMessageCommand, type Message, type SQSClient } from "@aws-sdk/client-sqs";
import type { SQSBatchResponse, SQSEvent, SQSMessageAttributes, SQSRecord } from "aws-lambda";
import { VisibilityHeartbeat } from "./visibility-heartbeat.ts";

/** Pause after a receive that found nothing (a batch finishing ends it: its group may have more). */
const IDLE_PAUSE_MS = 50;

export interface PollerOptions {
  readonly sqs: SQSClient;
  readonly queueUrl: string;
  readonly queueArn?: string;
  readonly region: string;
  readonly handler: (event: SQSEvent) => Promise<SQSBatchResponse | undefined>;
  /** 1..10, like the event source mapping's BatchSize for FIFO queues. */
  readonly batchSize?: number;
  /** Batches of different message groups that may run at once. */
  readonly maxConcurrency?: number;
  readonly waitTimeSeconds?: number;
  /** @default IDLE_PAUSE_MS */
  readonly idlePauseMs?: number;
  readonly onError?: (error: Error) => void;
  /** The queue's visibility timeout: a batch still in the handler is kept in flight (visibility-heartbeat.ts). @default not kept */
  readonly visibilityTimeoutSeconds?: number;
}

function toAttributes(message: Message): SQSMessageAttributes {
  const out: SQSMessageAttributes = {};
  for (const [name, value] of Object.entries(message.MessageAttributes ?? {})) {
    out[name] = {
      dataType: value.DataType ?? "String",
      ...(value.StringValue !== undefined ? { stringValue: value.StringValue } : {}),
      ...(value.BinaryValue !== undefined ? { binaryValue: Buffer.from(value.BinaryValue).toString("base64") } : {}),
      stringListValues: value.StringListValues ?? [],
      binaryListValues: (value.BinaryListValues ?? []).map((b) => Buffer.from(b).toString("base64")),
    };
  }
  return out;
}

/** The SQS record shape Lambda hands to a function. */
export function toLambdaRecord(message: Message, queueArn: string, region: string): SQSRecord {
  const a = message.Attributes ?? {};
  return {
    messageId: message.MessageId ?? "",
    receiptHandle: message.ReceiptHandle ?? "",
    body: message.Body ?? "",
    attributes: {
      ApproximateReceiveCount: a.ApproximateReceiveCount ?? "1",
      SentTimestamp: a.SentTimestamp ?? String(Date.now()),
      SenderId: a.SenderId ?? "",
      ApproximateFirstReceiveTimestamp: a.ApproximateFirstReceiveTimestamp ?? String(Date.now()),
      ...(a.SequenceNumber !== undefined ? { SequenceNumber: a.SequenceNumber } : {}),
      ...(a.MessageGroupId !== undefined ? { MessageGroupId: a.MessageGroupId } : {}),
      ...(a.MessageDeduplicationId !== undefined ? { MessageDeduplicationId: a.MessageDeduplicationId } : {}),
    },
    messageAttributes: toAttributes(message),
    md5OfBody: message.MD5OfBody ?? "",
    eventSource: "aws:sqs",
    eventSourceARN: queueArn,
    awsRegion: region,
  };
}

/** Message ids the handler reported as failed; every id when its answer is not a batch response. */
function failedIds(response: unknown, batch: readonly Message[]): Set<string> {
  if (response === undefined || response === null) return new Set();
  const failures = (response as { batchItemFailures?: unknown }).batchItemFailures;
  if (!Array.isArray(failures)) return new Set(batch.map((m) => m.MessageId ?? ""));
  return new Set(failures.map((f: { itemIdentifier?: unknown }) => String(f?.itemIdentifier)));
}

export class LocalPoller {
  readonly #options: Required<Omit<PollerOptions, "queueArn" | "onError" | "visibilityTimeoutSeconds">> & Pick<PollerOptions, "onError"> & { queueArn: string };
  readonly #heartbeat: VisibilityHeartbeat | undefined;
  /** Groups with a batch in the handler right now. */
  readonly #busyGroups = new Set<string>();
  readonly #inFlight = new Set<Promise<void>>();
  #running = false;
  #loop: Promise<void> | undefined;
  /** Ends the idle pause early. */
  #wake: (() => void) | undefined;

  constructor(options: PollerOptions) {
    const batchSize = options.batchSize ?? 10;
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10) throw new RangeError("batchSize must be 1..10 for a FIFO queue");
    const queueName = options.queueUrl.split("/").pop() ?? "queue";
    this.#options = Object.freeze({
      sqs: options.sqs,
      queueUrl: options.queueUrl,
      region: options.region,
      handler: options.handler,
      batchSize,
      maxConcurrency: options.maxConcurrency ?? 4,
      waitTimeSeconds: options.waitTimeSeconds ?? 1,
      idlePauseMs: options.idlePauseMs ?? IDLE_PAUSE_MS,
      onError: options.onError,
      queueArn: options.queueArn ?? `arn:aws:sqs:${options.region}:000000000000:${queueName}`,
    });
    const { visibilityTimeoutSeconds, onError } = options;
    this.#heartbeat =
      visibilityTimeoutSeconds === undefined ? undefined : new VisibilityHeartbeat({ sqs: options.sqs, queueUrl: options.queueUrl, visibilityTimeoutSeconds, ...(onError ? { onError } : {}) });
  }

  /** The handler makes this message visible again (to come back at once): it is no longer kept in flight; resolves once no extend of it is on its way. */
  async release(receiptHandle: string): Promise<void> {
    await this.#heartbeat?.release(receiptHandle);
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops receiving; resolves once the batches already handed to the handler have finished. */
  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#loop;
    await Promise.allSettled([...this.#inFlight]);
  }

  async #run(): Promise<void> {
    let backoff = 100;
    while (this.#running) {
      try {
        if (this.#inFlight.size >= this.#options.maxConcurrency) {
          await Promise.race(this.#inFlight);
          continue;
        }
        const received = await this.#receiveAndDispatch();
        backoff = 100;
        // An empty receive would otherwise spin: a short poll, or a long poll the emulator ended early (it
        // wakes waiting receives on every send, even to a group that has a batch in flight, and answers them
        // empty). A batch that finishes ends the pause: its group's next messages are ready now.
        if (received === 0) await this.#idlePause();
      } catch (error) {
        this.#options.onError?.(error instanceof Error ? error : new Error(String(error)));
        await new Promise((resolve) => setTimeout(resolve, backoff));
        backoff = Math.min(backoff * 2, 5_000);
      }
    }
  }

  #idlePause(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.#wake?.(), this.#options.idlePauseMs);
      this.#wake = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
    });
  }

  /** One receive, dispatched, and waited for: lets a test step the poller without sleeping. */
  async pollOnce(): Promise<number> {
    const count = await this.#receiveAndDispatch(0);
    await Promise.allSettled([...this.#inFlight]);
    return count;
  }

  async #receiveAndDispatch(waitTimeSeconds = this.#options.waitTimeSeconds): Promise<number> {
    const { sqs, queueUrl, batchSize } = this.#options;
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl: queueUrl,
        MaxNumberOfMessages: batchSize,
        WaitTimeSeconds: waitTimeSeconds,
        MessageSystemAttributeNames: ["All"],
        MessageAttributeNames: ["All"],
      }),
    );
    const messages = out.Messages ?? [];
    const groups = new Map<string, Message[]>();
    for (const message of messages) {
      const group = message.Attributes?.MessageGroupId ?? "";
      groups.set(group, [...(groups.get(group) ?? []), message]);
    }
    for (const [group, batch] of groups) this.#dispatch(group, batch);
    return messages.length;
  }

  #dispatch(group: string, batch: Message[]): void {
    const task = (async () => {
      // SQS does not hand out a group that has messages in flight; this keeps the rule even if an emulator bends it.
      while (this.#busyGroups.has(group)) await Promise.race(this.#inFlight);
      this.#busyGroups.add(group);
      try {
        await this.#handle(batch);
      } finally {
        this.#busyGroups.delete(group);
        this.#wake?.();
      }
    })();
    const tracked = task.catch((error: unknown) => this.#options.onError?.(error instanceof Error ? error : new Error(String(error))));
    this.#inFlight.add(tracked);
    void tracked.finally(() => this.#inFlight.delete(tracked));
  }

  async #handle(batch: Message[]): Promise<void> {
    const { handler, queueArn, region, sqs, queueUrl } = this.#options;
    const event: SQSEvent = { Records: batch.map((m) => toLambdaRecord(m, queueArn, region)) };
    let failed: Set<string>;
    const stopKeeping = this.#heartbeat?.keep(batch);
    try {
      failed = failedIds(await handler(event), batch);
    } catch (error) {
      // A handler that throws fails the whole batch, as in Lambda.
      this.#options.onError?.(error instanceof Error ? error : new Error(String(error)));
      return;
    } finally {
      await stopKeeping?.();
    }
    const done = batch.filter((m) => !failed.has(m.MessageId ?? ""));
    if (done.length === 0) return;
    const result = await sqs.send(
      new DeleteMessageBatchCommand({
        QueueUrl: queueUrl,
        Entries: done.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? "" })),
      }),
    );
    if (result.Failed?.length) throw new Error(`could not delete ${result.Failed.length} handled message(s): ${result.Failed[0]?.Message ?? ""}`);
  }
}
