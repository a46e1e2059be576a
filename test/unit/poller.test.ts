// The poller's own rules, against a scripted SQS client: what it does when the
// queue bends FIFO's rules is not something an emulator can be made to show.

import { DeleteMessageBatchCommand, ReceiveMessageCommand, type Message, type SQSClient } from "@aws-sdk/client-sqs";
import type { SQSEvent } from "aws-lambda";
import { expect, it } from "vitest";
import { LocalPoller } from "../../lambdas/local/poller.ts";
import { eventually } from "../support/local-cloud.ts";

function scriptedSqs(receives: Message[][]) {
  const deleted: string[] = [];
  const client = {
    send: async (command: unknown) => {
      if (command instanceof ReceiveMessageCommand) return { Messages: receives.shift() ?? [] };
      if (command instanceof DeleteMessageBatchCommand) {
        deleted.push(...(command.input.Entries ?? []).map((e) => e.ReceiptHandle ?? ""));
        return { Successful: command.input.Entries, Failed: [] };
      }
      throw new Error("unexpected command");
    },
  };
  return { sqs: client as unknown as SQSClient, deleted };
}

const message = (id: string, group: string): Message => ({ MessageId: id, ReceiptHandle: `rh-${id}`, Body: id, Attributes: { MessageGroupId: group } });

it("waits for a group's batch to finish before handing out the next one, even when the queue hands both out", async () => {
  const { sqs, deleted } = scriptedSqs([[message("a1", "a")], [message("a2", "a"), message("b1", "b")]]);
  const events: string[] = [];
  // a1's batch lasts until b1's begins (10 s at most: a poller that makes group b wait for group a fails below, late).
  let b1Began: () => void = () => undefined;
  const b1Begins = new Promise<void>((resolve) => (b1Began = resolve));
  const poller = new LocalPoller({
    sqs,
    queueUrl: "http://127.0.0.1:1/000000000000/q.fifo",
    region: "us-east-1",
    waitTimeSeconds: 0,
    handler: async (event: SQSEvent) => {
      const ids = event.Records.map((r) => r.messageId).join(",");
      events.push(`start ${ids}`);
      if (ids === "b1") b1Began();
      if (ids === "a1") {
        let limit: NodeJS.Timeout | undefined;
        await Promise.race([b1Begins, new Promise((resolve) => (limit = setTimeout(resolve, 10_000)))]);
        clearTimeout(limit);
      }
      events.push(`end ${ids}`);
      return { batchItemFailures: [] };
    },
  });
  poller.start();
  await eventually(async () => expect(deleted.sort()).toEqual(["rh-a1", "rh-a2", "rh-b1"]), 30_000, 20);
  await poller.stop();
  expect(events.indexOf("start a2")).toBeGreaterThan(events.indexOf("end a1"));
  // Another group does not wait for group a.
  expect(events.indexOf("start b1"), "b1 began only after a1 ended: group b waited for group a").toBeLessThan(events.indexOf("end a1"));
});

it("deletes only the messages the handler did not report as failed", async () => {
  const { sqs, deleted } = scriptedSqs([[message("m1", "g"), message("m2", "g"), message("m3", "g")]]);
  const poller = new LocalPoller({
    sqs,
    queueUrl: "http://127.0.0.1:1/000000000000/q.fifo",
    region: "us-east-1",
    handler: async () => ({ batchItemFailures: [{ itemIdentifier: "m2" }, { itemIdentifier: "m3" }] }),
  });
  expect(await poller.pollOnce()).toBe(3);
  expect(deleted).toEqual(["rh-m1"]);
});

it("receives again as soon as a batch finishes, not after the pause an empty receive starts", async () => {
  // The emulator answers a long poll empty when a send wakes it while the group has a batch in flight:
  // here the second receive comes back empty while a1 is handled, and a2 waits in the queue.
  const receives = [[message("a1", "a")], [], [message("a2", "a")]];
  const { sqs, deleted } = scriptedSqs(receives);
  let releaseA1: () => void = () => undefined;
  const poller = new LocalPoller({
    sqs,
    queueUrl: "http://127.0.0.1:1/000000000000/q.fifo",
    region: "us-east-1",
    waitTimeSeconds: 0,
    // Far longer than the test may take: only the finished batch can end it.
    idlePauseMs: 600_000,
    handler: async (event: SQSEvent) => {
      if (event.Records[0]?.messageId === "a1") await new Promise<void>((resolve) => (releaseA1 = resolve));
      return { batchItemFailures: [] };
    },
  });
  poller.start();
  // The empty receive is done: the poller is in its pause, a1 still in the handler.
  await eventually(async () => expect(receives).toHaveLength(1), 5_000, 20);
  expect(deleted).toEqual([]);
  releaseA1();
  await eventually(async () => expect(deleted).toEqual(["rh-a1", "rh-a2"]), 10_000, 20);
  await poller.stop();
});
