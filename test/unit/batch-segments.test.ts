// One history segment per set per batch (lambdas/applier/batch-segments.ts):
// the segment count, restores of every moment across a multi-message batch,
// a crash before the batch's segment is written (nothing checkpointed, the
// redelivered batch applied once), and batches that stop part way (a store
// failure, a delta whose base is gone, a refused signature, a poison message)
// keeping what the messages before recorded.

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { SQSRecord } from "aws-lambda";
import { expect, it } from "vitest";
import { restoreAt } from "../../agent/restore-at.ts";
import { segmentsPrefix } from "../../contract/history.ts";
import { stagingKey, statusKey } from "../../contract/layout.ts";
import { generateSigningKey, type SigningKey } from "../../contract/signing.ts";
import { encodeInline, type WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { listSegments, readSegment } from "../../lambdas/history/history-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { CopyOptions, WriteResult } from "../../lambdas/store/store.ts";
import { messageBody, putRecord, signedSqsAttributes } from "../support/messages.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { tempDir } from "../support/tree.ts";
import { KillableStore } from "../support/killable-store.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "docs";
/** Record times: every moment of the test lies before the applier's clock. */
const T0 = 1_800_000_000_000;

function sqsRecord(id: string, body: string, key?: SigningKey): SQSRecord {
  const now = String(Date.now());
  return {
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: { ApproximateReceiveCount: "1", SentTimestamp: now, SenderId: "x", ApproximateFirstReceiveTimestamp: now, MessageGroupId: SET },
    messageAttributes: signedSqsAttributes(SET, body, key),
    md5OfBody: "",
    eventSource: "aws:sqs",
    eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
    awsRegion: "us-east-1",
  };
}

const at = (seq: number) => T0 + seq * 1000;
/** Seq `seq` puts "f" (overwritten by every message) or a file of its own, stamped at(seq). */
const put = (seq: number, path: string, text: string): WireRecord => ({ ...putRecord(seq, path, text), at: at(seq) });
/** A message of two records: "f" overwritten, and g<first> created. */
const message = (first: number): SQSRecord => sqsRecord(`m${first}`, messageBody(SET, [put(first, "f", `f at ${first}`), put(first + 1, `g${first}`, `g ${first}`)]));

/** Segment PUTs counted; `failing` makes every write of keys it matches fail as a killed applier's would. */
class WatchedStore extends MemoryStore {
  segmentPuts = 0;
  failing: ((key: string, meta?: Record<string, string>) => boolean) | undefined;
  #check(key: string, meta?: Record<string, string>): void {
    if (this.failing?.(key, meta)) throw Object.assign(new Error(`injected failure writing ${key}`), { name: "InternalError", $metadata: { httpStatusCode: 500 } });
  }
  override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
    this.#check(key, meta);
    if (key.startsWith(segmentsPrefix(SET))) this.segmentPuts += 1;
    return super.put(key, body, meta);
  }
  override async copy(from: string, to: string, meta: Record<string, string>, options?: CopyOptions): Promise<WriteResult> {
    this.#check(to);
    return super.copy(from, to, meta, options);
  }
}

function setup(options: { versioned?: boolean } = {}) {
  const store = new WatchedStore(options);
  const applier = new Applier({ store, log: () => {}, now: () => new Date(T0 + 1_000_000) });
  return { store, handler: createHandler(applier, () => {}) };
}

/** The set restored as it was at `moment`: path -> content. */
async function restoredAt(store: MemoryStore, moment: number): Promise<Record<string, string>> {
  const out = tempDir("tidemark-batch-at-");
  try {
    const root = join(out.path, "tree");
    await restoreAt(store, SET, moment, root);
    return Object.fromEntries(readdirSync(root).map((name) => [name, readFileSync(join(root, name), "utf8")]));
  } finally {
    out.remove();
  }
}

/** What the set held after seq `last` of messages made by message(1), message(3), ... */
function expectedAfter(last: number): Record<string, string> {
  const tree: Record<string, string> = {};
  for (let first = 1; first <= last; first += 2) {
    tree.f = `f at ${first}`;
    if (first + 1 <= last) tree[`g${first}`] = `g ${first}`;
  }
  return tree;
}

/** Every seq the set's segments hold, in order (a seq recorded twice shows twice). */
async function recordedSeqs(store: MemoryStore): Promise<number[]> {
  const seqs: number[] = [];
  for (const n of await listSegments(store, SET)) for (const entry of await readSegment(store, SET, n)) seqs.push(entry.seq);
  return seqs;
}

it.each([
  ["an unversioned bucket", false],
  ["a versioned bucket", true],
])("writes one history segment for a batch of 10 messages of a set, and every moment inside the batch restores exactly (%s)", async (_what, versioned) => {
  const { store, handler } = setup({ versioned });
  expect((await handler({ Records: [message(1)] })).batchItemFailures).toEqual([]);
  const before = store.segmentPuts;
  const batch = Array.from({ length: 10 }, (_, i) => message(3 + 2 * i));
  expect((await handler({ Records: batch })).batchItemFailures).toEqual([]);
  expect(store.segmentPuts - before).toBe(1);
  expect((await readSetStatus(store, SET)).lastSeq).toBe(22);
  expect(await recordedSeqs(store)).toEqual(Array.from({ length: 22 }, (_, i) => i + 1));
  // Each record's moment, and the moment just before it, inside the one segment.
  for (let seq = 3; seq <= 22; seq++) {
    expect(await restoredAt(store, at(seq))).toEqual(expectedAfter(seq));
    expect(await restoredAt(store, at(seq) - 1)).toEqual(expectedAfter(seq - 1));
  }
});

it("after a crash between applying a batch and writing its segment, checkpoints nothing of it, keeps its staged payloads, and applies it once when it comes back", async () => {
  const { store, handler } = setup();
  expect((await handler({ Records: [message(1)] })).batchItemFailures).toEqual([]);
  // One of the batch's records comes staged: its payload must outlive the crash.
  const staged = put(7, "f", "f at 7");
  if (staged.op !== "put") throw new Error("unreachable");
  await store.put(stagingKey(SET, 7, staged.sha256), Buffer.from("f at 7"));
  const batch = [message(3), message(5), sqsRecord("m7", messageBody(SET, [{ ...staged, content: { kind: "staged" } }, put(8, "g7", "g 7")]))];

  store.failing = (key) => key.startsWith(segmentsPrefix(SET));
  const crashed = await handler({ Records: batch });
  expect(crashed.batchItemFailures).toEqual(batch.map((r) => ({ itemIdentifier: r.messageId })));
  // The records reached the live mirror, but neither the status nor any segment counts them.
  expect((await store.get(`data/${SET}/g5`))?.body.toString()).toBe("g 5");
  const stalled = await readSetStatus(store, SET);
  expect(stalled.lastSeq).toBe(2);
  expect(stalled.appliedRecords).toBe(2);
  expect(await recordedSeqs(store)).toEqual([1, 2]);
  expect(await store.get(stagingKey(SET, 7, staged.sha256))).toBeDefined();

  store.failing = undefined;
  expect((await handler({ Records: batch })).batchItemFailures).toEqual([]);
  const status = await readSetStatus(store, SET);
  expect(status.lastSeq).toBe(8);
  expect(status.appliedRecords).toBe(8);
  expect(await recordedSeqs(store)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  expect(await store.get(stagingKey(SET, 7, staged.sha256))).toBeUndefined();
  for (let seq = 3; seq <= 8; seq++) expect(await restoredAt(store, at(seq))).toEqual(expectedAfter(seq));
});

it("a store failure part way through a message keeps the history of the messages before it and drops the failed one's partial records", async () => {
  const { store, handler } = setup();
  expect((await handler({ Records: [message(1)] })).batchItemFailures).toEqual([]);
  const batch = [message(3), message(5), message(7), message(9)];
  // Seq 7 (f) is applied, seq 8 (g7) fails: the third message stops half done.
  store.failing = (key) => key.endsWith("/g7");
  const response = await handler({ Records: batch });
  expect(response.batchItemFailures).toEqual([{ itemIdentifier: "m7" }, { itemIdentifier: "m9" }]);
  const status = await readSetStatus(store, SET);
  expect(status.lastSeq).toBe(6);
  expect(status.appliedRecords).toBe(6);
  expect(await recordedSeqs(store)).toEqual([1, 2, 3, 4, 5, 6]);
  expect(await restoredAt(store, at(6))).toEqual(expectedAfter(6));

  store.failing = undefined;
  expect((await handler({ Records: batch.slice(2) })).batchItemFailures).toEqual([]);
  expect((await readSetStatus(store, SET)).lastSeq).toBe(10);
  expect(await recordedSeqs(store)).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
  for (let seq = 3; seq <= 10; seq++) expect(await restoredAt(store, at(seq))).toEqual(expectedAfter(seq));
});

it("a delta whose base is gone stops the set part way: the messages before it keep their history and the checkpoint names the last record applied", async () => {
  const { store, handler } = setup();
  expect((await handler({ Records: [message(1)] })).batchItemFailures).toEqual([]);
  const sha256 = sha("never sent");
  const delta: WireRecord = { seq: 6, at: at(6), op: "put", path: "gone.txt", size: 10, mode: 0o644, mtimeNs: "1", sha256, content: encodeInline(Buffer.alloc(0)), delta: { base: sha256, blocks: [] } };
  const batch = [message(3), sqsRecord("m5", messageBody(SET, [put(5, "f", "f at 5"), delta, put(7, "after", "x")])), message(8)];
  expect((await handler({ Records: batch })).batchItemFailures).toEqual([]);
  const status = await readSetStatus(store, SET);
  expect(status.state).toBe("out-of-sync");
  expect(status.reason).toMatch(/delta base of gone.txt is missing/);
  expect(status.lastSeq).toBe(5);
  expect(await recordedSeqs(store)).toEqual([1, 2, 3, 4, 5]);
  expect(await restoredAt(store, at(5))).toEqual(expectedAfter(5));
});

it.each([
  ["a message signed by another key", () => sqsRecord("m5", messageBody(SET, [put(5, "f", "forged")]), generateSigningKey())],
  ["a message that does not parse", () => sqsRecord("m5", "not json")],
])("%s in the middle of a batch is recorded after the history of the messages before it", async (_what, bad) => {
  const { store, handler } = setup();
  expect((await handler({ Records: [message(1)] })).batchItemFailures).toEqual([]);
  const batch = [message(3), bad(), message(5), message(7)];
  expect((await handler({ Records: batch })).batchItemFailures).toEqual([]);
  const status = await readSetStatus(store, SET);
  expect(status.lastRejected?.messageId ?? status.refused?.last.messageId).toBe("m5");
  expect(status.lastSeq).toBe(8);
  expect(await recordedSeqs(store)).toEqual(Array.from({ length: 8 }, (_, i) => i + 1));
  for (let seq = 3; seq <= 8; seq++) expect(await restoredAt(store, at(seq))).toEqual(expectedAfter(seq));
});

it("once the batch's segment is durable, writes the status and removes the staged payloads it covers at once, never before", async () => {
  /** Logs when each write starts and ends; each takes a turn of the event loop, so writes issued together overlap. */
  class OverlapStore extends WatchedStore {
    readonly log: string[] = [];
    async #track<T>(key: string, write: () => Promise<T>): Promise<T> {
      this.log.push(`start ${key}`);
      await new Promise((resolve) => setImmediate(resolve));
      try {
        return await write();
      } finally {
        this.log.push(`end ${key}`);
      }
    }
    override put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
      return this.#track(key, () => super.put(key, body, meta));
    }
    override delete(key: string): Promise<void> {
      return this.#track(key, () => super.delete(key));
    }
  }
  const store = new OverlapStore();
  const now = () => new Date(T0 + 1_000_000);
  expect((await createHandler(new Applier({ store, log: () => {}, now }), () => {})({ Records: [message(1)] })).batchItemFailures).toEqual([]);
  const records = [put(3, "s3", "staged 3"), put(4, "s4", "staged 4"), put(5, "s5", "staged 5")];
  for (const record of records) if (record.op === "put") await store.put(stagingKey(SET, record.seq, record.sha256), Buffer.from(`staged ${record.seq}`));
  const staged = records.map((r) => ({ ...r, content: { kind: "staged" as const } }));
  store.log.length = 0;
  // A cold applier: it writes the status at the end of the batch rather than leaving it to the segment.
  const handler = createHandler(new Applier({ store, log: () => {}, now }), () => {});
  expect((await handler({ Records: [sqsRecord("m3", messageBody(SET, staged)), message(6)] })).batchItemFailures).toEqual([]);
  expect((await readSetStatus(store, SET)).lastSeq).toBe(7);

  const segmentEnd = store.log.findIndex((line) => line.startsWith(`end ${segmentsPrefix(SET)}`));
  const after = (prefix: string) => store.log.flatMap((line, i) => (line.startsWith(`start ${prefix}`) ? [i] : []));
  const removals = after(`staging/${SET}/`);
  const statusWrites = after(statusKey(SET));
  expect(removals).toHaveLength(3);
  expect(statusWrites).toHaveLength(1);
  // Nothing that relies on the segment starts before it is durable...
  expect(segmentEnd).toBeGreaterThanOrEqual(0);
  for (const i of [...removals, ...statusWrites]) expect(i).toBeGreaterThan(segmentEnd);
  // ...and then all of it is in flight together.
  const lastStart = Math.max(...removals, ...statusWrites);
  const firstEnd = store.log.findIndex((line, i) => i > segmentEnd && (line.startsWith(`end staging/${SET}/`) || line.startsWith(`end ${statusKey(SET)}`)));
  expect(lastStart).toBeLessThan(firstEnd);
});

it("keeps the checkpoint of messages that recorded no history (skipped records) when a later message of the batch fails", async () => {
  const { store, handler } = setup();
  expect((await handler({ Records: [message(1)] })).batchItemFailures).toEqual([]);
  const skips = sqsRecord("m3", messageBody(SET, [{ seq: 3, at: at(3), op: "skip" }, { seq: 4, at: at(4), op: "skip" }]));
  store.failing = (key) => key.endsWith("/g5");
  const response = await handler({ Records: [skips, message(5)] });
  expect(response.batchItemFailures).toEqual([{ itemIdentifier: "m5" }]);
  // m3 is acknowledged: its seqs count, or the redelivered m5 would find a gap.
  expect((await readSetStatus(store, SET)).lastSeq).toBe(4);

  store.failing = undefined;
  expect((await handler({ Records: [message(5)] })).batchItemFailures).toEqual([]);
  const status = await readSetStatus(store, SET);
  expect(status.state).toBe("in-sync");
  expect(status.lastSeq).toBe(6);
  expect(await restoredAt(store, at(6))).toEqual({ f: "f at 5", g1: "g 1", g5: "g 5" });
});


it.each([
  ["an unversioned bucket", false],
  ["a versioned bucket", true],
])("restores every moment of random batches applied through kills anywhere in them, redelivered as SQS does (%s)", async (_what, versioned) => {
  const store = new KillableStore({ versioned });
  const handler = createHandler(new Applier({ store, log: () => {}, now: () => new Date(T0 + 1_000_000) }), () => {});
  const random = seededRandom(versioned ? 17 : 29);
  // The source as each seq left it, and the queue of messages not yet acknowledged.
  const tree = new Map<string, string>();
  const moments: Record<string, string>[] = [{}];
  const queue: SQSRecord[] = [];
  const skips = new Set<number>();
  let seq = 0;
  for (let m = 0; m < 120; m++) {
    const records: WireRecord[] = [];
    for (let r = 1 + random(3); r > 0; r--) {
      seq += 1;
      const files = [...tree.keys()];
      const pick = random(10);
      const from = files[random(Math.max(files.length, 1))];
      if (pick < 5 || from === undefined) {
        const path = `f${random(8)}`;
        const text = `${path} at ${seq}`;
        records.push(put(seq, path, text));
        tree.set(path, text);
      } else if (pick < 7) {
        records.push({ seq, at: at(seq), op: "delete", path: from });
        tree.delete(from);
      } else if (pick < 9) {
        const to = `f${random(8)}`;
        if (to === from) {
          records.push({ seq, at: at(seq), op: "skip" });
          skips.add(seq);
        } else {
          records.push({ seq, at: at(seq), op: "rename", from, to });
          tree.set(to, tree.get(from) ?? "");
          tree.delete(from);
        }
      } else {
        records.push({ seq, at: at(seq), op: "skip" });
        skips.add(seq);
      }
      moments.push(Object.fromEntries([...tree].sort()));
    }
    queue.push(sqsRecord(`m${m}`, messageBody(SET, records)));
  }
  let rounds = 0;
  while (queue.length > 0) {
    rounds += 1;
    if (rounds > 200) throw new Error("the queue does not drain");
    const batch = queue.slice(0, 1 + random(10));
    // Killed in every other batch, anywhere: a record, the segment, the status.
    if (rounds % 2 === 0) store.failAfter = 1 + random(3 * batch.length + 2);
    const failed = new Set((await handler({ Records: batch })).batchItemFailures.map((f) => f.itemIdentifier));
    store.failAfter = undefined;
    // A FIFO group's failed messages come back before anything after them.
    const acknowledged = batch.filter((r) => !failed.has(r.messageId)).length;
    expect(batch.slice(acknowledged).every((r) => failed.has(r.messageId))).toBe(true);
    queue.splice(0, acknowledged);
  }
  expect(store.kills).toBeGreaterThan(3);
  const status = await readSetStatus(store, SET);
  expect(status.state).toBe("in-sync");
  expect(status.lastSeq).toBe(seq);
  // Every record once in the history, skips aside (they change nothing), however often its message was applied.
  expect(await recordedSeqs(store)).toEqual(Array.from({ length: seq }, (_, i) => i + 1).filter((s) => !skips.has(s)));
  for (let s = 1; s <= seq; s++) expect(await restoredAt(store, at(s)), `the moment of seq ${s}`).toEqual(moments[s]);
});

it("a rename whose target a later message of the batch replaces is not applied again after a kill before the batch's segment", async () => {
  const { store, handler } = setup();
  expect((await handler({ Records: [message(1)] })).batchItemFailures).toEqual([]);
  const batch = [sqsRecord("m3", messageBody(SET, [{ seq: 3, at: at(3), op: "rename", from: "g1", to: "h" }])), sqsRecord("m4", messageBody(SET, [put(4, "h", "h at 4")]))];
  // Killed writing the segment that holds the put: both messages come back.
  store.failing = (key, meta) => key.startsWith(segmentsPrefix(SET)) && meta?.["tidemark-checkpoint-seq"] === "4";
  expect((await handler({ Records: batch })).batchItemFailures).toEqual(batch.map((r) => ({ itemIdentifier: r.messageId })));
  store.failing = undefined;
  expect((await handler({ Records: batch })).batchItemFailures).toEqual([]);
  const status = await readSetStatus(store, SET);
  expect(status.reason).toBeUndefined();
  expect(status.state).toBe("in-sync");
  expect(status.lastSeq).toBe(4);
  expect(await restoredAt(store, at(3))).toEqual({ f: "f at 1", h: "g 1" });
  expect(await restoredAt(store, at(4))).toEqual({ f: "f at 1", h: "h at 4" });
});

it("a delta whose file a later message of the batch changes again is not applied again after a kill before the batch's segment", async () => {
  const { store, handler } = setup();
  expect((await handler({ Records: [message(1)] })).batchItemFailures).toEqual([]);
  // "f at 1" -> "F at 1" -> "F at 9", each a one-byte ranged delta of the one before.
  const delta = (seq: number, base: string, next: string, offset: number): WireRecord => ({
    seq,
    at: at(seq),
    op: "put",
    path: "f",
    size: next.length,
    mode: 0o644,
    mtimeNs: "1",
    sha256: sha(next),
    content: encodeInline(Buffer.from(next.slice(offset, offset + 1))),
    delta: { base: sha(base), blocks: [], ranges: [[offset, 1]] },
  });
  const batch = [sqsRecord("m3", messageBody(SET, [delta(3, "f at 1", "F at 1", 0)])), sqsRecord("m4", messageBody(SET, [delta(4, "F at 1", "F at 9", 5)]))];
  // Killed writing the segment that holds the second delta: both messages come back.
  store.failing = (key, meta) => key.startsWith(segmentsPrefix(SET)) && meta?.["tidemark-checkpoint-seq"] === "4";
  expect((await handler({ Records: batch })).batchItemFailures).toEqual(batch.map((r) => ({ itemIdentifier: r.messageId })));
  store.failing = undefined;
  expect((await handler({ Records: batch })).batchItemFailures).toEqual([]);
  const status = await readSetStatus(store, SET);
  expect(status.reason).toBeUndefined();
  expect(status.state).toBe("in-sync");
  expect(status.lastSeq).toBe(4);
  expect((await store.get(`data/${SET}/f`))?.body.toString()).toBe("F at 9");
  expect(await restoredAt(store, at(3))).toEqual({ f: "F at 1", g1: "g 1" });
});
