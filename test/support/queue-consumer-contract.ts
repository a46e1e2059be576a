// The queue consumer's contract: the local poller (lambdas/local/poller.ts)
// drives a handler with the event source mapping's FIFO semantics, on the
// emulator's queue and on a real SQS queue alike. The applier's guarantees
// rest on these: a failed record and everything after it in its group come
// back in order, other groups go on, a released record comes back at once,
// and a record that keeps failing ends in the dead-letter queue.

import { ChangeMessageVisibilityCommand, ReceiveMessageCommand, SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import type { SQSBatchResponse, SQSEvent } from "aws-lambda";
import { afterEach, describe, expect, it } from "vitest";
import { LocalPoller, type PollerOptions } from "../../lambdas/local/poller.ts";
import { eventually } from "./local-cloud.ts";

export interface ConsumerQueues {
  readonly sqs: SQSClient;
  readonly region: string;
  readonly queueUrl: string;
  /** The queue's ARN: what the records name as their event source. */
  readonly queueArn: string;
  /** Whether the poller is given the ARN, or works it out from the queue URL. */
  readonly pollerIsToldArn: boolean;
  readonly dlqUrl: string;
  /** Deletes the queues (a no-op where they die with the emulator). */
  remove(): Promise<void>;
}

/** A fresh FIFO queue and its FIFO dead-letter queue per test, so leftovers of one test never reach another. */
export type MakeQueues = (options: { visibilityTimeoutSeconds: number; maxReceiveCount: number }) => Promise<ConsumerQueues>;

export function queueConsumerContract(name: string, makeQueues: MakeQueues, skipReason?: string): void {
  describe.skipIf(skipReason !== undefined)(`Queue consumer contract: ${name}${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
    let poller: LocalPoller | undefined;
    const made: ConsumerQueues[] = [];
    afterEach(async () => {
      await poller?.stop();
      poller = undefined;
      for (const queues of made.splice(0)) await queues.remove();
    });

    async function fresh(options: { visibilityTimeoutSeconds?: number; maxReceiveCount?: number } = {}): Promise<ConsumerQueues> {
      const queues = await makeQueues({ visibilityTimeoutSeconds: options.visibilityTimeoutSeconds ?? 1, maxReceiveCount: options.maxReceiveCount ?? 5 });
      made.push(queues);
      return queues;
    }

    async function send(queues: ConsumerQueues, group: string, bodies: string[]): Promise<void> {
      for (const body of bodies) {
        await queues.sqs.send(new SendMessageCommand({ QueueUrl: queues.queueUrl, MessageGroupId: group, MessageDeduplicationId: `${group}-${body}`, MessageBody: body }));
      }
    }

    function start(queues: ConsumerQueues, handler: PollerOptions["handler"], onError?: (error: Error) => void): void {
      poller = new LocalPoller({ sqs: queues.sqs, queueUrl: queues.queueUrl, ...(queues.pollerIsToldArn ? { queueArn: queues.queueArn } : {}), region: queues.region, waitTimeSeconds: 0, handler, ...(onError ? { onError } : {}) });
      poller.start();
    }

    it("hands each group's messages to the handler in order, with Lambda's record shape, and deletes what it handled", async () => {
      const queues = await fresh();
      await send(queues, "a", ["a1", "a2", "a3"]);
      await send(queues, "b", ["b1", "b2"]);
      const seen: { body: string; group: string | undefined; source: string; receives: string }[] = [];
      start(queues, async (event: SQSEvent) => {
        for (const r of event.Records) seen.push({ body: r.body, group: r.attributes.MessageGroupId, source: r.eventSourceARN, receives: r.attributes.ApproximateReceiveCount });
        return { batchItemFailures: [] };
      });
      await eventually(async () => expect(seen).toHaveLength(5), 20_000, 50);
      expect(seen.filter((s) => s.group === "a").map((s) => s.body)).toEqual(["a1", "a2", "a3"]);
      expect(seen.filter((s) => s.group === "b").map((s) => s.body)).toEqual(["b1", "b2"]);
      expect(new Set(seen.map((s) => s.source))).toEqual(new Set([queues.queueArn]));
      expect(new Set(seen.map((s) => s.receives))).toEqual(new Set(["1"]));
      await poller?.stop();
      const left = await queues.sqs.send(new ReceiveMessageCommand({ QueueUrl: queues.queueUrl, WaitTimeSeconds: 0, MaxNumberOfMessages: 10 }));
      expect(left.Messages ?? []).toEqual([]);
    });

    it("hands several waiting messages of a group to the handler in one batch, in order, and one batch of a group at a time", async () => {
      const queues = await fresh();
      const bodies = Array.from({ length: 12 }, (_, i) => `m${String(i).padStart(2, "0")}`);
      await send(queues, "g", bodies);
      const batches: string[][] = [];
      let inHandler = 0;
      let overlapped = false;
      start(queues, async (event: SQSEvent) => {
        inHandler += 1;
        overlapped ||= inHandler > 1;
        batches.push(event.Records.map((r) => r.body));
        await new Promise((resolve) => setTimeout(resolve, 20));
        inHandler -= 1;
        return { batchItemFailures: [] };
      });
      await eventually(async () => expect(batches.flat()).toEqual(bodies), 30_000, 50);
      expect(overlapped).toBe(false);
      expect(Math.max(...batches.map((b) => b.length))).toBeGreaterThan(1);
      expect(Math.max(...batches.map((b) => b.length))).toBeLessThanOrEqual(10);
    });

    it("a batch that fails whole comes back whole and in order after the visibility timeout", async () => {
      const queues = await fresh({ visibilityTimeoutSeconds: 1 });
      await send(queues, "g", ["x1", "x2", "x3", "x4"]);
      const deliveries: string[][] = [];
      start(queues, async (event: SQSEvent): Promise<SQSBatchResponse> => {
        deliveries.push(event.Records.map((r) => r.body));
        // The first delivery of x1 fails, and with it everything after it in the group.
        if (deliveries.flat().filter((b) => b === "x1").length === 1) return { batchItemFailures: event.Records.map((r) => ({ itemIdentifier: r.messageId })) };
        return { batchItemFailures: [] };
      });
      // Whatever the first batch held comes back first, in the same order, followed by the rest of the group.
      await eventually(async () => expect(deliveries.flat().slice(deliveries[0]?.length ?? 0)).toEqual(["x1", "x2", "x3", "x4"]), 30_000, 100);
    });

    it("on a partial batch failure holds back the failed record and the rest of its group, while other groups go on", async () => {
      // Held back for good unless released: nothing here waits for a timeout.
      const queues = await fresh({ visibilityTimeoutSeconds: 600 });
      await send(queues, "g", ["m1", "m2", "m3"]);
      const handled: string[] = [];
      const heldBack: string[] = [];
      let failedOnce = false;
      start(queues, async (event: SQSEvent): Promise<SQSBatchResponse> => {
        const failures: { itemIdentifier: string }[] = [];
        for (const r of event.Records) {
          // The FIFO rule the applier follows: after a failure, every later record of the group fails too.
          if (failures.length > 0 || (r.body === "m2" && !failedOnce)) {
            if (r.body === "m2") failedOnce = true;
            heldBack.push(r.receiptHandle);
            failures.push({ itemIdentifier: r.messageId });
            continue;
          }
          handled.push(r.body);
          if (r.body === "m1") await send(queues, "other", ["o1"]);
        }
        // Only once o1 went ahead may g's failed records come back.
        if (handled.includes("o1")) {
          for (const receipt of heldBack.splice(0)) {
            await queues.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queues.queueUrl, ReceiptHandle: receipt, VisibilityTimeout: 0 }));
          }
        }
        return { batchItemFailures: failures };
      });
      await eventually(async () => expect(handled).toEqual(["m1", "o1", "m2", "m3"]), 30_000, 100);
    });

    it("redelivers a failed record at once when the handler releases its visibility, long before the visibility timeout", async () => {
      const queues = await fresh({ visibilityTimeoutSeconds: 600 });
      await send(queues, "g", ["marker", "after"]);
      const handled: { body: string; receives: string }[] = [];
      let released = false;
      start(queues, async (event: SQSEvent): Promise<SQSBatchResponse> => {
        const failures: { itemIdentifier: string }[] = [];
        const releasing = !released;
        for (const r of event.Records) {
          if (failures.length === 0 && (released || r.body !== "marker")) {
            handled.push({ body: r.body, receives: r.attributes.ApproximateReceiveCount });
            continue;
          }
          // What the applier does for a marker whose action goes on in the next invocation: the marker and every
          // record after it in its batch are released (the group is held while any of them is in flight).
          if (releasing) await queues.sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: queues.queueUrl, ReceiptHandle: r.receiptHandle, VisibilityTimeout: 0 }));
          released = true;
          failures.push({ itemIdentifier: r.messageId });
        }
        return { batchItemFailures: failures };
      });
      await eventually(async () => expect(handled.map((h) => h.body)).toEqual(["marker", "after"]), 30_000, 100);
      expect(handled[0]?.receives).toBe("2");
    });

    it("fails the whole batch when the handler throws, and hands it out again", async () => {
      const queues = await fresh({ visibilityTimeoutSeconds: 1 });
      await send(queues, "g", ["x"]);
      let calls = 0;
      const errors: string[] = [];
      start(
        queues,
        async () => {
          calls += 1;
          if (calls === 1) throw new Error("boom");
          return { batchItemFailures: [] };
        },
        (error) => errors.push(error.message),
      );
      await eventually(async () => expect(calls).toBe(2), 30_000, 100);
      expect(errors).toContain("boom");
    });

    it("moves a record that keeps failing to the dead-letter queue after maxReceiveCount deliveries, and the group goes on", async () => {
      const queues = await fresh({ visibilityTimeoutSeconds: 1, maxReceiveCount: 2 });
      // "next" is sent once the poison is in the dead-letter queue: a record that rode in the poison's failed batches
      // would have counted those receives too, and with Lambda's batches may reach the dead-letter queue with it.
      await send(queues, "g", ["poison"]);
      let attempts = 0;
      const handled: string[] = [];
      start(queues, async (event: SQSEvent) => {
        const failures: { itemIdentifier: string }[] = [];
        for (const r of event.Records) {
          if (r.body === "poison") attempts += 1;
          if (r.body === "poison" || failures.length > 0) failures.push({ itemIdentifier: r.messageId });
          else handled.push(r.body);
        }
        return { batchItemFailures: failures };
      });
      await eventually(
        async () => {
          const out = await queues.sqs.send(new ReceiveMessageCommand({ QueueUrl: queues.dlqUrl, WaitTimeSeconds: 0 }));
          expect(out.Messages?.map((m) => m.Body)).toEqual(["poison"]);
        },
        40_000,
        250,
      );
      expect(attempts).toBe(2);
      await send(queues, "g", ["next"]);
      await eventually(async () => expect(handled).toEqual(["next"]), 30_000, 100);
    });
  });
}
