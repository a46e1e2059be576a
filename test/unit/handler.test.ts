// The Lambda handler: FIFO partial batch failures (the failed message and the
// rest of its group come back; other groups go on) and one structured log
// line per batch that CloudWatch reads as metrics.

import type { SQSEvent, SQSRecord } from "aws-lambda";
import { expect, it } from "vitest";
import { statusKey, type SetStatus } from "../../contract/layout.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { createHandler, queueUrlOf } from "../../lambdas/applier/handler.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { WriteResult } from "../../lambdas/store/store.ts";
import { messageBody, putRecord, signedSqsAttributes } from "../support/messages.ts";

function record(id: string, group: string, body: string, sentAt: number): SQSRecord {
  return {
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: { ApproximateReceiveCount: "1", SentTimestamp: String(sentAt), SenderId: "x", ApproximateFirstReceiveTimestamp: String(sentAt), MessageGroupId: group },
    messageAttributes: signedSqsAttributes(group, body),
    md5OfBody: "",
    eventSource: "aws:sqs",
    eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
    awsRegion: "us-east-1",
  };
}

/** A store whose writes under one prefix fail, as S3 does when it throttles. */
class ThrottledStore extends MemoryStore {
  failing = "data/a/two";
  override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
    if (key.startsWith(this.failing)) throw Object.assign(new Error("SlowDown"), { name: "SlowDown", $metadata: { httpStatusCode: 503 } });
    return super.put(key, body, meta);
  }
}

it("fails the first failing message and the rest of its group, applies other groups, and logs metrics", async () => {
  const store = new ThrottledStore();
  const lines: string[] = [];
  const handler = createHandler(new Applier({ store, log: () => {} }), (line) => lines.push(line), "Tidemark/test");
  const sentAt = Date.now() - 2_000;
  const event: SQSEvent = {
    Records: [
      record("a1", "a", messageBody("a", [putRecord(1, "one", "1")]), sentAt),
      record("a2", "a", messageBody("a", [putRecord(2, "two", "2")]), sentAt),
      record("a3", "a", messageBody("a", [putRecord(3, "three", "3")]), sentAt),
      record("b1", "b", messageBody("b", [putRecord(1, "one", "b1"), putRecord(2, "two", "b2")]), sentAt + 500),
    ],
  };
  const response = await handler(event);
  expect(response.batchItemFailures).toEqual([{ itemIdentifier: "a2" }, { itemIdentifier: "a3" }]);
  expect((await store.get("data/a/one"))?.body.toString()).toBe("1");
  expect(await store.get("data/a/three")).toBeUndefined();
  expect((await store.get("data/b/two"))?.body.toString()).toBe("b2");

  expect(lines).toHaveLength(1);
  const line = JSON.parse(lines[0] ?? "{}") as Record<string, unknown> & { _aws: { CloudWatchMetrics: { Namespace: string; Metrics: { Name: string }[] }[] } };
  expect(line).toMatchObject({ level: "info", msg: "batch handled", sets: ["a", "b"], RecordsApplied: 3, BytesApplied: 5, MessagesRejected: 0, SetsOutOfSync: 0 });
  expect(line.ReplicationLag).toBeGreaterThanOrEqual(2_000);
  expect(line._aws.CloudWatchMetrics[0]?.Namespace).toBe("Tidemark/test");
  expect(line._aws.CloudWatchMetrics[0]?.Metrics.map((m) => m.Name)).toEqual(["RecordsApplied", "BytesApplied", "MessagesRejected", "SetsOutOfSync", "ReplicationLag"]);

  // Redelivered once the store recovers: applied in order, nothing twice.
  store.failing = "nothing";
  const retry = await handler({ Records: event.Records.filter((r) => r.messageId !== "a1" && r.messageId !== "b1") });
  expect(retry.batchItemFailures).toEqual([]);
  expect((await store.get("data/a/three"))?.body.toString()).toBe("3");
});

it("counts a rejected message and a set out of sync, as a warning", async () => {
  const lines: string[] = [];
  const handler = createHandler(new Applier({ store: new MemoryStore(), log: () => {} }), (line) => lines.push(line));
  await handler({ Records: [record("x", "a", "not json", Date.now()), record("y", "b", messageBody("b", [putRecord(5, "f", "gap")]), Date.now())] });
  expect(JSON.parse(lines[0] ?? "{}")).toMatchObject({ level: "warn", MessagesRejected: 1, SetsOutOfSync: 1 });
});

it("names the queue of an event source ARN, on AWS and on a local endpoint", () => {
  expect(queueUrlOf("arn:aws:sqs:eu-west-1:123456789012:tidemark.fifo")).toBe("https://sqs.eu-west-1.amazonaws.com/123456789012/tidemark.fifo");
  expect(queueUrlOf("arn:aws:sqs:us-east-1:000000000000:tidemark.fifo", "http://127.0.0.1:4566")).toBe("http://127.0.0.1:4566/000000000000/tidemark.fifo");
  expect(() => queueUrlOf("tidemark.fifo")).toThrow(/not an SQS queue ARN/);
});

it("hands the applier the queue's SentTimestamp: a record counts no earlier than an hour before its message was sent", async () => {
  const store = new MemoryStore();
  const applied = Date.now() - 2 * 86_400_000;
  const sent = applied - 3 * 60 * 60_000;
  const handler = createHandler(new Applier({ store, log: () => {}, now: () => new Date(applied), history: { days: 7 } }), () => {});
  const body = messageBody("docs", [{ ...putRecord(1, "a.txt", "a"), at: 0 }]);
  await handler({ Records: [record("s1", "docs", body, sent)] });
  const status = JSON.parse((await store.get(statusKey("docs")))?.body.toString() ?? "{}") as SetStatus;
  // Held three hours on the target's side: an hour before it was sent, not before it was applied.
  expect(status.history?.at).toBe(sent - 60 * 60_000);
});
