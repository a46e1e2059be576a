// A batch's next message's pack is read (and checked) while the message before
// it writes its files (batch-memory.ts, packed-content.ts: PackReads): reads
// only, so order, exactly-once and "a bad message writes nothing" hold as
// before; a read ahead that failed is made again in the message's turn.

import { createHash } from "node:crypto";
import type { SQSRecord } from "aws-lambda";
import { expect, it, vi } from "vitest";
import { stagingKey } from "../../contract/layout.ts";
import type { WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { PutOptions, StoredObject, WriteResult } from "../../lambdas/store/store.ts";
import { signedIncoming, signedSqsAttributes } from "../support/messages.ts";
import { generateSigningKey, SIGNATURE_ATTRIBUTE } from "../../contract/signing.ts";
import { BatchMemory } from "../../lambdas/applier/batch-memory.ts";
import * as wire from "../../contract/wire.ts";

// Counts parses (the read ahead parses the next message once, for its turn too).
vi.mock("../../contract/wire.ts", async (original) => {
  const actual = await original<typeof wire>();
  return { ...actual, parseMessage: vi.fn(actual.parseMessage) };
});

const SET = "a";
const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

function record(id: string, body: string): SQSRecord {
  const now = String(Date.now());
  return {
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: { ApproximateReceiveCount: "1", SentTimestamp: now, SenderId: "x", ApproximateFirstReceiveTimestamp: now, MessageGroupId: SET },
    messageAttributes: signedSqsAttributes(SET, body),
    md5OfBody: "",
    eventSource: "aws:sqs",
    eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
    awsRegion: "us-east-1",
  };
}

/** A message of `count` packed files from seq `first` (named m<first>-<i>), and its pack staged as the agent stages it. */
async function packedMessage(store: MemoryStore, first: number, count: number, packed: (pack: Buffer) => Buffer = (pack) => pack): Promise<{ record: SQSRecord; key: string; files: Map<string, string> }> {
  const files = new Map<string, string>();
  const records: WireRecord[] = [];
  const parts: Buffer[] = [];
  let offset = 0;
  for (let i = 0; i < count; i++) {
    const path = `m${first}-${i}.txt`;
    const bytes = Buffer.from(`file ${i} of the message at ${first}\n`.repeat(i + 1));
    files.set(path, bytes.toString());
    records.push({ seq: first + i, op: "put", path, size: bytes.length, mode: 0o644, mtimeNs: `${1_700_000_000_000_000_000n + BigInt(first + i)}`, sha256: sha256(bytes), content: { kind: "packed", encoding: "raw", offset, length: bytes.length } });
    parts.push(bytes);
    offset += bytes.length;
  }
  const pack = Buffer.concat(parts);
  const body = JSON.stringify({ v: 1, set: SET, records, pack: { size: pack.length, sha256: sha256(pack) } });
  const key = stagingKey(SET, first, sha256(pack));
  await store.put(key, packed(pack));
  return { record: record(`m${first}`, body), key, files };
}

/** Logs reads and writes in order; holds the data puts of paths starting with `holding` until `release`. */
class OrderedStore extends MemoryStore {
  readonly events: string[] = [];
  holding = "nothing";
  held = 0;
  failReadsOf = new Set<string>();
  #release: () => void = () => undefined;
  readonly #gate = new Promise<void>((resolve) => (this.#release = resolve));
  release(): void {
    this.#release();
  }
  override async get(key: string, versionId?: string): Promise<StoredObject | undefined> {
    this.events.push(`get ${key}`);
    if (this.failReadsOf.delete(key)) throw Object.assign(new Error("socket hang up"), { code: "ECONNRESET" });
    return super.get(key, versionId);
  }
  override async put(key: string, body: Uint8Array, meta?: Record<string, string>, options?: PutOptions): Promise<WriteResult> {
    if (key.startsWith(`data/${SET}/${this.holding}`)) {
      this.held += 1;
      await this.#gate;
    }
    this.events.push(`put ${key}`);
    return super.put(key, body, meta, options);
  }
  reads(key: string): number {
    return this.events.filter((e) => e === `get ${key}`).length;
  }
}

async function expectApplied(store: MemoryStore, files: Map<string, string>): Promise<void> {
  for (const [path, text] of files) expect((await store.get(`data/${SET}/${path}`))?.body.toString()).toBe(text);
}

it("reads the next message's pack while this one writes its files, reads each pack once, and applies both in order", async () => {
  const store = new OrderedStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const one = await packedMessage(store, 1, 5);
  const two = await packedMessage(store, 6, 5);
  store.events.length = 0;
  store.holding = "m1-";
  const handling = handler({ Records: [one.record, two.record] });
  // The first message's files wait to be written: its content was checked, and the next pack's read has started.
  await vi.waitFor(() => expect(store.held).toBeGreaterThan(0));
  expect(store.events).toContain(`get ${two.key}`);
  expect(store.events.some((e) => e.startsWith(`put data/${SET}/m6-`))).toBe(false);
  store.release();
  expect((await handling).batchItemFailures).toEqual([]);
  expect(store.reads(one.key)).toBe(1);
  expect(store.reads(two.key)).toBe(1);
  // Order: every file of the first message before any of the second.
  const puts = store.events.filter((e) => e.startsWith(`put data/${SET}/`));
  expect(puts.findLastIndex((e) => e.includes("/m1-"))).toBeLessThan(puts.findIndex((e) => e.includes("/m6-")));
  await expectApplied(store, one.files);
  await expectApplied(store, two.files);
  expect((await readSetStatus(store, SET)).lastSeq).toBe(10);
});

it("parses a message read ahead once, for its turn too", async () => {
  const store = new OrderedStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const messages = [await packedMessage(store, 1, 2), await packedMessage(store, 3, 2), await packedMessage(store, 5, 2)];
  const parse = vi.mocked(wire.parseMessage);
  parse.mockClear();
  expect((await handler({ Records: messages.map((m) => m.record) })).batchItemFailures).toEqual([]);
  expect(parse.mock.calls.map(([body]) => messages.findIndex((m) => m.record.body === body))).toEqual([0, 1, 2]);
  expect((await readSetStatus(store, SET)).lastSeq).toBe(6);
});

it("a pack read ahead that failed is read again in its message's turn", async () => {
  const store = new OrderedStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const one = await packedMessage(store, 1, 3);
  const two = await packedMessage(store, 4, 3);
  store.failReadsOf.add(two.key);
  expect((await handler({ Records: [one.record, two.record] })).batchItemFailures).toEqual([]);
  expect(store.reads(two.key)).toBe(2);
  await expectApplied(store, two.files);
  expect((await readSetStatus(store, SET)).lastSeq).toBe(6);
});

it("a next message whose pack is not what it says writes nothing, while the message before it is applied", async () => {
  const store = new OrderedStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const one = await packedMessage(store, 1, 3);
  const two = await packedMessage(store, 4, 3, (pack) => Buffer.concat([pack.subarray(1), Buffer.from("x")]));
  expect((await handler({ Records: [one.record, two.record] })).batchItemFailures).toEqual([]);
  await expectApplied(store, one.files);
  for (const path of two.files.keys()) expect(await store.get(`data/${SET}/${path}`)).toBeUndefined();
  const status = await readSetStatus(store, SET);
  expect(status.lastSeq).toBe(3);
  expect(status.lastRejected?.messageId).toBe("m4");
  expect(status.lastRejected?.error).toMatch(/the message's pack at .* has sha256/);
});

it("a batch delivered again after its packs were removed: its messages are duplicates, nothing fails or is written again", async () => {
  const store = new OrderedStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const one = await packedMessage(store, 1, 3);
  const two = await packedMessage(store, 4, 3);
  expect((await handler({ Records: [one.record, two.record] })).batchItemFailures).toEqual([]);
  // The checkpoint covers both: their packs are gone, so the reads ahead of the redelivery find nothing.
  expect(await store.get(one.key)).toBeUndefined();
  expect(await store.get(two.key)).toBeUndefined();
  store.events.length = 0;
  expect((await handler({ Records: [one.record, two.record] })).batchItemFailures).toEqual([]);
  expect(store.events.filter((e) => e.startsWith("put data/"))).toEqual([]);
  expect((await readSetStatus(store, SET)).lastSeq).toBe(6);
  await expectApplied(store, two.files);
});

/** Holds the reads of `gated` until `open`; logs when each held read settled, and fails the data puts of `failing`. */
class GatedStore extends OrderedStore {
  gated = "nothing";
  failing = "nothing";
  readonly order: string[] = [];
  #open: () => void = () => undefined;
  readonly #gateOpen = new Promise<void>((resolve) => (this.#open = resolve));
  open(): void {
    this.#open();
  }
  override async get(key: string, versionId?: string): Promise<StoredObject | undefined> {
    const reading = super.get(key, versionId);
    if (key !== this.gated) return reading;
    await this.#gateOpen;
    try {
      return await reading;
    } finally {
      this.order.push(`read ${key} settled`);
    }
  }
  override async put(key: string, body: Uint8Array, meta?: Record<string, string>, options?: PutOptions): Promise<WriteResult> {
    if (key.startsWith(`data/${SET}/${this.failing}`)) throw Object.assign(new Error("SlowDown"), { name: "SlowDown", $metadata: { httpStatusCode: 503 } });
    return super.put(key, body, meta, options);
  }
}

it("a batch that stops at an earlier failure returns only once the next message's pack, read ahead, is read: no read goes on after the invocation", async () => {
  const store = new GatedStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const one = await packedMessage(store, 1, 3);
  const two = await packedMessage(store, 4, 3);
  // The first message's content is checked (its pack read), the second's read starts, then the first's writes fail.
  store.failing = "m1-";
  store.gated = two.key;
  const handling = handler({ Records: [one.record, two.record] });
  void handling.then(() => store.order.push("handler returned"));
  await vi.waitFor(() => expect(store.events).toContain(`get ${two.key}`));
  // No timing asserted: the read is let go later, and the handler must not have returned before it settled.
  setTimeout(() => store.open(), 50);
  expect((await handling).batchItemFailures.map((f) => f.itemIdentifier)).toEqual(["m1", "m4"]);
  expect(store.order).toEqual([`read ${two.key} settled`, "handler returned"]);
  for (const path of two.files.keys()) expect(await store.get(`data/${SET}/${path}`)).toBeUndefined();
});

it("a message applied without a batch reads its pack only once it is checked: another owner's message reads none", async () => {
  const store = new OrderedStore();
  const applier = new Applier({ store, log: () => {} });
  const owned = await packedMessage(store, 1, 2);
  await applier.applyMessage(signedIncoming("m1", SET, owned.record.body));
  const other = await packedMessage(store, 3, 2);
  store.events.length = 0;
  const outcome = await applier.applyMessage(signedIncoming("m3", SET, other.record.body, generateSigningKey()));
  expect(outcome).toMatchObject({ kind: "rejected", error: expect.stringMatching(/belongs to key/) });
  expect(store.reads(other.key)).toBe(0);
});

/** A record of packedMessage's signed by another key than the set's owner's, under its own message id. */
function othersRecord(message: { record: SQSRecord }, id: string, key = generateSigningKey()): SQSRecord {
  return { ...message.record, messageId: id, messageAttributes: signedSqsAttributes(SET, message.record.body, key) };
}

it("a refused message's pack, read before its refusal, is let go when the next message's read starts: one pack held besides the one being applied", async () => {
  const store = new OrderedStore();
  const applier = new Applier({ store, log: () => {} });
  const handler = createHandler(applier, () => {});
  const owned = await packedMessage(store, 1, 2);
  expect((await handler({ Records: [owned.record] })).batchItemFailures).toEqual([]);
  const refused = othersRecord(await packedMessage(store, 3, 3), "x3");
  const three = await packedMessage(store, 3, 2);
  const five = await packedMessage(store, 5, 2);
  const incoming = [refused, three.record, five.record].map((r) => ({ messageId: r.messageId, groupId: SET, body: r.body, attributes: { [SIGNATURE_ATTRIBUTE]: r.messageAttributes[SIGNATURE_ATTRIBUTE]?.stringValue ?? "" } }));
  // As the handler drives a batch: each message, with the next one named while it is applied.
  const batch = new BatchMemory();
  const held: number[] = [];
  const put = store.put.bind(store);
  store.put = async (key, body, meta, options) => {
    if (key.startsWith(`data/${SET}/`)) held.push(batch.packs.size);
    return put(key, body, meta, options);
  };
  const outcomes: string[] = [];
  for (const [i, message] of incoming.entries()) {
    const applying = applier.applyMessage(message, undefined, batch);
    const next = incoming[i + 1];
    batch.following(next ? { messageId: next.messageId, body: next.body } : undefined);
    outcomes.push((await applying).kind);
  }
  await applier.finishBatch(batch);
  await batch.packs.settle();
  expect(outcomes).toEqual(["rejected", "applied", "applied"]);
  // While the message at 3 writes its files, only the next message's pack is held (not the refused one's too).
  expect(held.length).toBeGreaterThan(0);
  expect(Math.max(...held)).toBe(1);
  await expectApplied(store, three.files);
  await expectApplied(store, five.files);
});

it("while a refused message's pack is still being read, no other read starts early: a run of refused messages reads one pack at a time", async () => {
  const store = new GatedStore();
  const handler = createHandler(new Applier({ store, log: () => {} }), () => {});
  const owned = await packedMessage(store, 1, 2);
  expect((await handler({ Records: [owned.record] })).batchItemFailures).toEqual([]);
  const first = await packedMessage(store, 3, 3);
  const second = await packedMessage(store, 3, 4);
  const three = await packedMessage(store, 3, 2);
  // The first refused message's read runs until the message at 3 reads its own pack, in its turn.
  store.gated = first.key;
  const get = store.get.bind(store);
  store.get = async (key, versionId) => {
    if (key === three.key) store.open();
    return get(key, versionId);
  };
  const response = await handler({ Records: [othersRecord(first, "x3"), othersRecord(second, "y3"), three.record] });
  expect(response.batchItemFailures).toEqual([]);
  expect(store.reads(first.key)).toBe(1);
  expect(store.reads(second.key)).toBe(0);
  expect(store.order).toEqual([`read ${first.key} settled`]);
  await expectApplied(store, three.files);
});
