// Legitimate repeats of applied seqs the two-writers check (duplicates.ts) must
// not take for a second writer: a redelivery after the status write of a
// resync failed, a new journal generation restarting the chain in the batch
// that applied the old one's last records, and seqs applied while the stack
// ran without history.

import type { SQSRecord } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { statusKey } from "../../contract/layout.ts";
import type { WireMessage, WireRecord } from "../../contract/wire.ts";
import { Applier, type MessageOutcome } from "../../lambdas/applier/applier.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import type { WriteResult } from "../../lambdas/store/store.ts";
import { putRecord, signedIncoming, signedSqsAttributes } from "../support/messages.ts";

const SET = "docs";

/** A store whose next write of the set's status fails (S3 answered 500, or the Lambda was killed just before it). */
class StatusWriteFails extends MemoryStore {
  failNext = false;
  override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
    if (this.failNext && key === statusKey(SET)) {
      this.failNext = false;
      throw new Error("InternalError: We encountered an internal error. Please try again.");
    }
    return super.put(key, body, meta);
  }
}

function body(records: WireRecord[], gen?: string): string {
  const message: WireMessage = { v: 1, set: SET, records, ...(gen !== undefined ? { gen } : {}) };
  return JSON.stringify(message);
}

/** A message of the set as Lambda hands it over in a batch. */
function sqsRecord(id: string, text: string): SQSRecord {
  const now = String(Date.now());
  return {
    messageId: id,
    receiptHandle: `rh-${id}`,
    body: text,
    attributes: { ApproximateReceiveCount: "1", SentTimestamp: now, SenderId: "x", ApproximateFirstReceiveTimestamp: now, MessageGroupId: SET },
    messageAttributes: signedSqsAttributes(SET, text),
    md5OfBody: "",
    eventSource: "aws:sqs",
    eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
    awsRegion: "us-east-1",
  };
}

describe("legitimate repeats of applied seqs", () => {
  it("takes the redelivery of a resync message whose status write failed after its segment for a redelivery", async () => {
    const store = new StatusWriteFails();
    const applier = new Applier({ store, log: () => {} });
    let n = 0;
    const deliver = (text: string): Promise<MessageOutcome> => applier.applyMessage(signedIncoming(`m${++n}`, SET, text));
    expect(await deliver(body([putRecord(1, "a", "v1")]))).toMatchObject({ kind: "applied" });
    // `tidemark mirror` on an in-sync set: the records journaled before the resync travel in its message, superseded by it.
    const mirror = body([putRecord(2, "a", "v2"), putRecord(3, "b", "v3"), { seq: 4, op: "resync", reason: "tidemark mirror" }, putRecord(5, "a", "v5")]);
    store.failNext = true;
    await expect(deliver(mirror)).rejects.toThrow(/internal error/);
    // The segment (with its checkpoint) was written: the status read folds it, without the resync it followed.
    expect(await readSetStatus(store, SET)).toMatchObject({ state: "in-sync", lastSeq: 5 });
    // The queue delivers the message again.
    expect(await deliver(mirror)).toEqual({ kind: "duplicate", set: SET });
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "in-sync", lastSeq: 5 });
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toBeUndefined();
    expect(await deliver(body([putRecord(6, "c", "v6")]))).toMatchObject({ kind: "applied", last: 6 });
  });

  it("compares a new generation's repeated seqs with its own records, not with the old generation's of the same batch", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    const handler = createHandler(applier, () => {});
    expect((await handler({ Records: [sqsRecord("old-1", body([putRecord(1, "a", "old 1"), putRecord(2, "a", "old 2"), putRecord(3, "a", "old 3")], "g1"))] })).batchItemFailures).toEqual([]);
    // The host's journal was lost (a container without its state volume) while its last message still waited in the
    // queue: the new journal's first message, restarting the chain at seq 1, comes in the same batch.
    const restart = body([{ seq: 1, op: "resync", reason: "journal lost" }, putRecord(2, "a", "new 2"), putRecord(3, "b", "new 3"), putRecord(4, "c", "new 4"), putRecord(5, "d", "new 5")], "g2");
    const response = await handler({ Records: [sqsRecord("old-2", body([putRecord(4, "a", "old 4"), putRecord(5, "a", "old 5")], "g1")), sqsRecord("new-1", restart)] });
    expect(response.batchItemFailures).toEqual([]);
    expect(await readSetStatus(store, SET)).toMatchObject({ state: "in-sync", generation: "g2", lastSeq: 5 });
    // The agent did not see the queue take it (it stopped again before it marked it sent) and sends it again.
    expect(await applier.applyMessage(signedIncoming("new-1-again", SET, restart))).toEqual({ kind: "duplicate", set: SET });
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "in-sync", lastSeq: 5 });
    expect(status.twoWriters).toBeUndefined();
  });

  it("does not take seqs applied while history was off for a second writer's once history records again", async () => {
    const store = new MemoryStore();
    let applier = new Applier({ store, log: () => {} });
    let n = 0;
    const deliver = (records: WireRecord[]): Promise<MessageOutcome> => applier.applyMessage(signedIncoming(`m${++n}`, SET, body(records)));
    await deliver([putRecord(1, "a", "v1"), putRecord(2, "a", "v2")]);
    // The stack ran a while with tidemark:pointInTimeDays 0, then with history again, which recorded seq 5.
    applier = new Applier({ store, log: () => {}, history: { days: 0 } });
    await deliver([putRecord(3, "a", "v3"), putRecord(4, "a", "v4")]);
    applier = new Applier({ store, log: () => {} });
    await deliver([putRecord(5, "a", "v5")]);
    // The agent sends seqs 3 and 4 again (it did not see the queue take them).
    expect(await deliver([putRecord(3, "a", "v3"), putRecord(4, "a", "v4")])).toEqual({ kind: "duplicate", set: SET });
    const status = await readSetStatus(store, SET);
    expect(status.state).toBe("in-sync");
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toMatchObject({ first: 3, last: 4 });
  });

  it("does not take the record a skip replaced, sent by an older copy of the journal, for a second writer's", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    let n = 0;
    const deliver = (records: WireRecord[]): Promise<MessageOutcome> => applier.applyMessage(signedIncoming(`m${++n}`, SET, body(records)));
    // The journal took seq 2 out of the stream (its spooled content was lost: poison.ts) and sent a skip in its place.
    await deliver([putRecord(1, "a", "v1"), { seq: 2, op: "skip" }, putRecord(3, "c", "v3")]);
    // The host's state folder came back from a backup taken before (the target is not ahead of it: no new generation).
    expect(await deliver([putRecord(1, "a", "v1"), putRecord(2, "b", "v2"), putRecord(3, "c", "v3")])).toEqual({ kind: "duplicate", set: SET });
    const status = await readSetStatus(store, SET);
    expect(status.state).toBe("in-sync");
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toMatchObject({ first: 2, last: 2 });
  });
});
