// A batch of one set's messages in one invocation: the set's status and owner
// record are read once (batch-memory.ts), while each message is still checked
// (its signature against the owner, its seqs against the checkpoint) and a
// failure or rejection part way leaves the set as a fresh read would see it.

import type { SQSEvent, SQSRecord } from "aws-lambda";
import { expect, it } from "vitest";
import { ownerKey, statusKey } from "../../contract/layout.ts";
import { generateSigningKey, type SigningKey } from "../../contract/signing.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { ObjectHead, StoredObject, WriteResult } from "../../lambdas/store/store.ts";
import { messageBody, putRecord, signedSqsAttributes } from "../support/messages.ts";

function record(id: string, group: string, body: string, key?: SigningKey): SQSRecord {
  const now = String(Date.now());
  return {
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: { ApproximateReceiveCount: "1", SentTimestamp: now, SenderId: "x", ApproximateFirstReceiveTimestamp: now, MessageGroupId: group },
    messageAttributes: signedSqsAttributes(group, body, key),
    md5OfBody: "",
    eventSource: "aws:sqs",
    eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
    awsRegion: "us-east-1",
  };
}

/** Counts reads by key, and fails puts under `failing` as S3 does when it throttles. */
class CountingStore extends MemoryStore {
  readonly reads = new Map<string, number>();
  failing = "nothing";
  #count(key: string): void {
    this.reads.set(key, (this.reads.get(key) ?? 0) + 1);
  }
  override async get(key: string, versionId?: string): Promise<StoredObject | undefined> {
    this.#count(key);
    return super.get(key, versionId);
  }
  override async head(key: string): Promise<ObjectHead | undefined> {
    this.#count(key);
    return super.head(key);
  }
  override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
    if (key.startsWith(this.failing)) throw Object.assign(new Error("SlowDown"), { name: "SlowDown", $metadata: { httpStatusCode: 503 } });
    return super.put(key, body, meta);
  }
  readsOf(key: string): number {
    return this.reads.get(key) ?? 0;
  }
}

const batchOf = (set: string, first: number, count: number): SQSRecord[] =>
  Array.from({ length: count }, (_, i) => record(`${set}${first + i}`, set, messageBody(set, [putRecord(first + i, `f${first + i}`, `content ${first + i}`)])));

it("reads a set's status and owner once per batch, not once per message, and applies every message in order", async () => {
  const store = new CountingStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  expect((await handler({ Records: batchOf("a", 1, 1) })).batchItemFailures).toEqual([]);
  store.reads.clear();

  const response = await handler({ Records: [...batchOf("a", 2, 5), ...batchOf("b", 1, 3)] });
  expect(response.batchItemFailures).toEqual([]);
  expect(store.readsOf(statusKey("a"))).toBe(1);
  expect(store.readsOf(ownerKey("a"))).toBe(1);
  expect(store.readsOf(statusKey("b"))).toBe(1);
  expect(store.readsOf(ownerKey("b"))).toBe(1);
  for (let seq = 1; seq <= 6; seq++) expect((await store.get(`data/a/f${seq}`))?.body.toString()).toBe(`content ${seq}`);
  expect((await readSetStatus(store, "a")).lastSeq).toBe(6);
  expect((await readSetStatus(store, "b")).lastSeq).toBe(3);

  // Without the batch (an applier driven message by message) every message reads them again.
  const applier = new Applier({ store, log: () => {} });
  store.reads.clear();
  for (const r of batchOf("a", 7, 3)) await applier.applyMessage({ messageId: r.messageId, groupId: "a", body: r.body, attributes: { [Object.keys(r.messageAttributes)[0] ?? ""]: Object.values(r.messageAttributes)[0]?.stringValue ?? "" } });
  expect(store.readsOf(ownerKey("a"))).toBe(3);
  expect((await readSetStatus(store, "a")).lastSeq).toBe(9);
});

it("registers a new set's owner with its first message and accepts the rest of the batch; a message signed by another key is refused, the others applied", async () => {
  const store = new CountingStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const intruder = generateSigningKey();
  const forged = record("a3", "a", messageBody("a", [putRecord(3, "f3", "forged")]), intruder);
  const [first, second, , fourth] = batchOf("a", 1, 4);
  if (!first || !second || !fourth) throw new Error("batch");
  // Seq 3 is refused (nothing written, the checkpoint stays at 2): the genuine seq 4 then finds a gap.
  const response = await handler({ Records: [first, second, forged, fourth] });
  expect(response.batchItemFailures).toEqual([]);
  // Read for the first message (none: it registers its key, which the second finds), and again after the refusal.
  expect(store.readsOf(ownerKey("a"))).toBe(2);
  expect((await store.get("data/a/f2"))?.body.toString()).toBe("content 2");
  expect(await store.get("data/a/f3")).toBeUndefined();
  const status = await readSetStatus(store, "a");
  expect(status.refused?.count).toBe(1);
  expect(status.refused?.last.keyId).toBe(intruder.keyId);
  expect(status.lastSeq).toBe(2);
  expect(status.state).toBe("out-of-sync");
  expect(status.reason).toMatch(/seq gap: expected 3, got 4/);
});

it("after a store failure part way, fails the rest of the set's batch and applies it exactly once when redelivered", async () => {
  const store = new CountingStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const records = batchOf("a", 1, 4);
  store.failing = "data/a/f3";
  const response = await handler({ Records: records });
  expect(response.batchItemFailures).toEqual([{ itemIdentifier: "a3" }, { itemIdentifier: "a4" }]);
  expect((await readSetStatus(store, "a")).lastSeq).toBe(2);

  // The redelivery starts again from the store (and a redelivered message already applied changes nothing).
  store.failing = "nothing";
  store.reads.clear();
  const retry = await handler({ Records: records.slice(1) });
  expect(retry.batchItemFailures).toEqual([]);
  expect(store.readsOf(statusKey("a"))).toBe(1);
  const status = await readSetStatus(store, "a");
  expect(status.lastSeq).toBe(4);
  expect(status.appliedRecords).toBe(4);
  expect(status.state).toBe("in-sync");
});

it("keeps a rejection recorded in the middle of a batch when later messages of the set are applied", async () => {
  const store = new CountingStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const [first, second] = batchOf("a", 1, 2);
  if (!first || !second) throw new Error("batch");
  const event: SQSEvent = { Records: [first, record("bad", "a", "not json"), second] };
  expect((await handler(event)).batchItemFailures).toEqual([]);
  const status = await store.get(statusKey("a"));
  const stored = await readSetStatus(store, "a");
  expect(status).toBeDefined();
  expect(stored.lastRejected?.messageId).toBe("bad");
  expect(stored.lastSeq).toBe(2);
});
