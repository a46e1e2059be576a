// Two writers on one journal: a copy of the source host that kept its machine
// id, state folder path and key signs as the owner and numbers its changes
// from the same seq. The target compares the seqs a message repeats with what
// its history recorded at them (duplicates.ts). A redelivery, or the agent's
// resend of the same records packed another way, stays silent and cheap;
// other changes at applied seqs are named in the set's status, applied
// nowhere, and hold the set until an operator adopts it.

import type { SQSRecord } from "aws-lambda";
import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { packNext, type PackedMessage } from "../../agent/sender.ts";
import { dataKey, type SetStatus } from "../../contract/layout.ts";
import { segmentKey, segmentsPrefix } from "../../contract/history.ts";
import { parseMessage, type WireMessage, type WireRecord } from "../../contract/wire.ts";
import { Applier, type MessageOutcome } from "../../lambdas/applier/applier.ts";
import { MAX_SEGMENTS_READ } from "../../lambdas/applier/duplicates.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import type { ObjectHead, StoredObject, WriteResult } from "../../lambdas/store/store.ts";
import { adoptSet } from "../../lambdas/target/owner.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { messageBody, putRecord, signedIncoming, signedSqsAttributes, TEST_KEY } from "../support/messages.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "docs";

/** Every request the applier makes, by kind and key. */
class CountingStore extends MemoryStore {
  readonly requests: string[] = [];
  override async get(key: string, versionId?: string): Promise<StoredObject | undefined> {
    this.requests.push(`GET ${key}`);
    return super.get(key, versionId);
  }
  override async head(key: string): Promise<ObjectHead | undefined> {
    this.requests.push(`HEAD ${key}`);
    return super.head(key);
  }
  override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
    this.requests.push(`PUT ${key}`);
    return super.put(key, body, meta);
  }
  override async delete(key: string): Promise<void> {
    this.requests.push(`DELETE ${key}`);
    return super.delete(key);
  }
  /** The requests `run` made. */
  async during(run: () => Promise<unknown>): Promise<string[]> {
    const from = this.requests.length;
    await run();
    return this.requests.slice(from);
  }
}

/** The set's history objects as they are: a second writer's message must leave them as they were. */
async function historyObjects(store: MemoryStore): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const object of store.list(segmentsPrefix(SET))) out.set(object.key, (await store.get(object.key))?.body.toString("base64") ?? "");
  return out;
}

/** A message of the set as Lambda hands it over in a batch. */
function sqsRecord(id: string, records: WireRecord[]): SQSRecord {
  const body = messageBody(SET, records);
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

describe("seqs a message repeats", () => {
  let store: CountingStore;
  let applier: Applier;
  let logged: string[];
  let n = 0;
  const deliver = (records: WireRecord[]): Promise<MessageOutcome> => applier.applyMessage(signedIncoming(`m${++n}`, SET, messageBody(SET, records)));
  const text = async (path: string) => (await store.get(dataKey(SET, path)))?.body.toString();

  const setUp = () => {
    store = new CountingStore();
    logged = [];
    applier = new Applier({ store, log: (line) => logged.push(line) });
  };

  it("reads no history for a message in order, and drops a redelivery silently with reads of the history only", async () => {
    setUp();
    await deliver([putRecord(1, "a", "v1"), { seq: 2, op: "mkdir", path: "d", mode: 0o755, mtimeNs: "5" }]);
    const inOrder = await store.during(() => deliver([putRecord(3, "d/b", "v3"), { seq: 4, op: "symlink", path: "l", target: "a", mtimeNs: "6" }, { seq: 5, op: "rename", from: "a", to: "c" }]));
    expect(inOrder.filter((request) => request.startsWith("GET history/"))).toEqual([]);

    const body = messageBody(SET, [putRecord(3, "d/b", "v3"), { seq: 4, op: "symlink", path: "l", target: "a", mtimeNs: "6" }, { seq: 5, op: "rename", from: "a", to: "c" }]);
    let outcome: MessageOutcome | undefined;
    const again = await store.during(async () => (outcome = await applier.applyMessage(signedIncoming("m-again", SET, body))));
    expect(outcome).toEqual({ kind: "duplicate", set: SET });
    // Nothing written: only reads.
    expect(again.filter((request) => !request.startsWith("GET ") && !request.startsWith("HEAD "))).toEqual([]);
    // It was compared: the history segments back to its first seq were read, the newest and the one that ends before seq 3.
    expect(again.filter((request) => request.startsWith("GET history/"))).toEqual([`GET ${segmentKey(SET, 1)}`, `GET ${segmentKey(SET, 0)}`]);
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "in-sync", lastSeq: 5 });
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toBeUndefined();
    expect(logged).toEqual([]);
  });

  it("names a message that repeats applied seqs with another path, applies none of it, and holds the set until it is adopted", async () => {
    setUp();
    await deliver([putRecord(1, "a", "original 1"), putRecord(2, "b", "original 2"), putRecord(3, "c", "original 3")]);
    const history = await historyObjects(store);
    // The copy journaled its own changes from seq 2 on; its message runs past the checkpoint too.
    expect(await deliver([putRecord(2, "from-the-copy", "copy 2"), putRecord(3, "c", "copy 3"), putRecord(4, "d", "copy 4")])).toEqual({ kind: "held", set: SET });
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "out-of-sync", lastSeq: 3, twoWriters: { seq: 2, messageId: `m${n}` } });
    expect(status.reason).toMatch(/^two writers on one journal: seq 2 differs from what was applied \(applied: put b \(10 bytes, sha256 [0-9a-f]{12}, .*; received: put from-the-copy \(6 bytes/);
    expect(status.twoWriters?.applied).toMatch(/^put b /);
    expect(status.twoWriters?.received).toMatch(/^put from-the-copy /);
    expect(await text("from-the-copy")).toBeUndefined();
    expect(await text("c")).toBe("original 3");
    expect(await text("d")).toBeUndefined();
    expect(await historyObjects(store)).toEqual(history);
    expect(logged.some((line) => line.includes("two writers on one journal"))).toBe(true);

    // The real host's next change is held too: the target does not know which writer is the set's.
    expect(await deliver([putRecord(4, "e", "original 4")])).toEqual({ kind: "held", set: SET });
    expect(await deliver([{ seq: 5, op: "resync", reason: "out of sync" }, putRecord(6, "e", "original 4")])).toEqual({ kind: "held", set: SET });
    expect(await text("e")).toBeUndefined();

    // The operator stopped the copy and adopted the set on the real host: its mirror is applied.
    await adoptSet(store, SET, TEST_KEY);
    expect((await readSetStatus(store, SET)).twoWriters).toBeUndefined();
    expect(await deliver([{ seq: 7, op: "resync", reason: "adopted" }, putRecord(8, "e", "original 4")])).toMatchObject({ kind: "applied" });
    expect(await readSetStatus(store, SET)).toMatchObject({ state: "in-sync", lastSeq: 8 });
  });

  it("compares a redelivery after the adoption with the adopting host's resync and later changes, not with the copy's that ran ahead", async () => {
    setUp();
    await deliver([putRecord(1, "a", "v1"), putRecord(2, "a", "v2")]);
    // The copy's message came first and was applied; the real host's, at the same seqs, is the one named.
    await deliver([putRecord(3, "copy", "c3"), putRecord(4, "copy", "c4"), putRecord(5, "copy", "c5"), putRecord(6, "copy", "c6")]);
    expect(await deliver([putRecord(3, "a", "v3"), putRecord(4, "a", "v4")])).toEqual({ kind: "held", set: SET });
    await adoptSet(store, SET, TEST_KEY);
    // The real host resyncs at its next seq: below what the copy reached.
    const mirror: WireRecord[] = [{ seq: 5, op: "resync", reason: "adopted" }, { seq: 6, op: "delete", path: "copy" }, putRecord(7, "a", "v4")];
    expect(await deliver(mirror)).toMatchObject({ kind: "applied" });
    expect(await deliver(mirror)).toEqual({ kind: "duplicate", set: SET });
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "in-sync", lastSeq: 7 });
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toBeUndefined();
  });

  it("names a redelivered range whose content differs at one seq (another sha256 of the same path)", async () => {
    setUp();
    await deliver([putRecord(1, "a", "one"), putRecord(2, "a", "two"), putRecord(3, "a", "three")]);
    expect(await deliver([putRecord(1, "a", "one"), putRecord(2, "a", "two"), putRecord(3, "a", "THREE")])).toEqual({ kind: "held", set: SET });
    expect((await readSetStatus(store, SET)).twoWriters).toMatchObject({ seq: 3 });
    expect(await text("a")).toBe("three");
  });

  it("names a second writer whose message repeats seqs an earlier message of the same batch applied", async () => {
    setUp();
    const handler = createHandler(applier, () => {});
    expect((await handler({ Records: [sqsRecord("real-1", [putRecord(1, "a", "real 1")])] })).batchItemFailures).toEqual([]);
    // The real host's message moves only the set's progress: its history waits for the end of the batch.
    const response = await handler({ Records: [sqsRecord("real-2", [putRecord(2, "b", "real 2"), putRecord(3, "c", "real 3")]), sqsRecord("copy", [putRecord(3, "c", "copy 3"), putRecord(4, "d", "copy 4")])] });
    expect(response.batchItemFailures).toEqual([]);
    expect(await readSetStatus(store, SET)).toMatchObject({ state: "out-of-sync", lastSeq: 3, twoWriters: { seq: 3, messageId: "copy" } });
    expect(await text("c")).toBe("real 3");
    expect(await text("d")).toBeUndefined();
  });

  it("takes a resend of seqs an earlier message of the same batch applied, cut at other seqs, for what it is", async () => {
    setUp();
    const handler = createHandler(applier, () => {});
    expect((await handler({ Records: [sqsRecord("m1", [putRecord(1, "a", "one")])] })).batchItemFailures).toEqual([]);
    // The first message moves only the set's progress: its history waits for the end of the batch.
    const response = await handler({ Records: [sqsRecord("m2", [putRecord(2, "b", "two"), putRecord(3, "c", "three")]), sqsRecord("m2-again", [putRecord(3, "c", "three"), putRecord(4, "d", "four")])] });
    expect(response.batchItemFailures).toEqual([]);
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "in-sync", lastSeq: 4 });
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toBeUndefined();
    expect(await text("d")).toBe("four");
  });

  it("does not compare seqs a resync superseded: they were never applied", async () => {
    setUp();
    await deliver([putRecord(1, "a", "v1")]);
    expect(await deliver([putRecord(3, "a", "v3")])).toMatchObject({ kind: "gap" });
    await deliver([{ seq: 5, op: "resync", reason: "seq gap" }, putRecord(6, "a", "v6")]);
    // The message the queue lost, delivered at last: its seqs are behind the resync.
    expect(await deliver([putRecord(2, "a", "v2"), putRecord(3, "a", "v3"), putRecord(4, "b", "v4")])).toEqual({ kind: "duplicate", set: SET });
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "in-sync", lastSeq: 6 });
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toBeUndefined();
  });

  it("takes the agent's stand-ins for records it could not deliver (a skip, a rename's source deleted) for the records applied", async () => {
    setUp();
    await deliver([putRecord(1, "a", "v1"), { seq: 2, op: "rename", from: "a", to: "b" }, putRecord(3, "c", "v3")]);
    // The agent resent them after the queue took them, and meanwhile took them out of its stream (poison.ts).
    expect(await deliver([{ seq: 1, op: "skip" }, { seq: 2, op: "delete", path: "a" }, putRecord(3, "c", "v3")])).toEqual({ kind: "duplicate", set: SET });
    expect((await readSetStatus(store, SET)).twoWriters).toBeUndefined();
    // A delete of anything else is not what was applied.
    expect(await deliver([{ seq: 2, op: "delete", path: "b" }])).toEqual({ kind: "held", set: SET });
    expect((await readSetStatus(store, SET)).twoWriters).toMatchObject({ seq: 2, applied: "rename a -> b", received: "delete b" });
  });

  it("does not take seqs applied while history was off for a second writer's: they are noted as not compared", async () => {
    setUp();
    await deliver([putRecord(1, "a", "v1"), putRecord(2, "a", "v2")]);
    // The stack ran a while with tidemark:pointInTimeDays 0, then with history again.
    applier = new Applier({ store, log: () => {}, history: { days: 0 } });
    await deliver([putRecord(3, "a", "v3"), putRecord(4, "a", "v4")]);
    applier = new Applier({ store, log: () => {} });
    expect(await deliver([putRecord(3, "a", "v3"), putRecord(4, "a", "v4")])).toEqual({ kind: "duplicate", set: SET });
    const status = await readSetStatus(store, SET);
    expect(status.state).toBe("in-sync");
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toMatchObject({ first: 3, last: 4, reason: "the set's history has not recorded them" });
  });

  it("reads back a bounded number of segments: an older redelivery is noted as not compared", async () => {
    setUp();
    for (let seq = 1; seq <= MAX_SEGMENTS_READ + 2; seq++) await deliver([putRecord(seq, "a", `v${seq}`)]);
    const reads = await store.during(async () => expect(await deliver([putRecord(1, "a", "v1")])).toEqual({ kind: "duplicate", set: SET }));
    expect(reads.filter((request) => request.startsWith("GET history/")).length).toBe(MAX_SEGMENTS_READ);
    const status = await readSetStatus(store, SET);
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toMatchObject({ first: 1, last: 1, reason: `they are more than ${MAX_SEGMENTS_READ} history segments back` });
  });

  it("drops a redelivery whose history is gone, and notes that it could not be compared without naming a problem", async () => {
    setUp();
    await deliver([putRecord(1, "a", "v1"), putRecord(2, "a", "v2")]);
    await deliver([putRecord(3, "a", "v3")]);
    // Past the window, retention removed the older segments.
    await store.delete(segmentKey(SET, 0));
    expect(await deliver([putRecord(1, "a", "v1"), putRecord(2, "a", "v2")])).toEqual({ kind: "duplicate", set: SET });
    const status = await readSetStatus(store, SET);
    expect(status.state).toBe("in-sync");
    expect(status.twoWriters).toBeUndefined();
    expect(status.duplicateUnchecked).toMatchObject({ messageId: `m${n}`, first: 1, last: 2, reason: expect.stringContaining("is gone") });
  });
});

describe("the agent's resend of records the target applied", () => {
  /** Stages what a packed message names, as the sender does before it sends, and delivers it. */
  async function send(store: MemoryStore, applier: Applier, packed: PackedMessage, id: string): Promise<MessageOutcome> {
    for (const payload of packed.staged) {
      if (!("bytes" in payload.source)) throw new Error("a payload of the test is not in memory");
      await store.put(payload.key, payload.source.bytes);
    }
    return applier.applyMessage(signedIncoming(id, SET, packed.body));
  }

  /** Packs and delivers every unsent record as packNext cuts them; the journal does not mark them sent (the agent died first). */
  async function sendAll(store: MemoryStore, applier: Applier, journal: Journal, options: Parameters<typeof packNext>[2], label: string): Promise<{ outcomes: MessageOutcome[]; bodies: string[] }> {
    const outcomes: MessageOutcome[] = [];
    const bodies: string[] = [];
    for (let after = 0, i = 0; ; i++) {
      const packed = packNext(journal, SET, options, after);
      if (!packed) return { outcomes, bodies };
      bodies.push(packed.body);
      outcomes.push(await send(store, applier, packed, `${label}${i}`));
      after = packed.last;
    }
  }

  it("is taken for the redelivery it is, packed another way and cut at other seqs", async () => {
    const state = tempDir("tidemark-state-");
    const journal = Journal.open(state.path);
    try {
      const store = new CountingStore();
      const applier = new Applier({ store, log: () => {} });
      const file = (path: string, bytes: Buffer) => ({ op: "put" as const, path, size: bytes.length, mode: 0o640, mtimeNs: "7", sha256: sha256(bytes), content: { bytes } });
      // A backlog large enough to be packed, a file too large for a message, and every other kind of record.
      journal.append(SET, [
        { op: "mkdir", path: "d", mode: 0o755, mtimeNs: "1" },
        ...Array.from({ length: 300 }, (_, i) => file(`d/f${i}`, i % 2 === 0 ? Buffer.from(`line ${i}\n`.repeat(900)) : randomBytes(8 * 1024))),
        file("big.bin", randomBytes(300 * 1024)),
        { op: "symlink", path: "link", target: "d/f0", mtimeNs: "3" },
        { op: "rename", from: "d/f1", to: "moved" },
        { op: "delete", path: "d/f2" },
        { op: "prune", id: "p1", keep: 10 },
        { op: "task", id: "t1", fields: { action: "snapshot", label: "nightly", timeoutSeconds: 0, insertedAt: new Date(0).toISOString() } },
      ]);
      const first = await sendAll(store, applier, journal, { wholePacks: true }, "first");
      expect(first.outcomes.every((o) => o.kind === "applied")).toBe(true);
      expect(first.bodies.some((body) => (parseMessage(body) as WireMessage).pack !== undefined)).toBe(true);

      // The agent died before it marked them sent; meanwhile it journaled one more change. After its restart the
      // queue refused packs (it sends each file inline or staged), and smaller messages cut the run elsewhere.
      journal.append(SET, [file("after-restart", Buffer.from("new"))]);
      let again: Awaited<ReturnType<typeof sendAll>> = { outcomes: [], bodies: [] };
      const requests = await store.during(async () => (again = await sendAll(store, applier, journal, { packBytes: 0, maxBytes: 100 * 1024, compression: "none" }, "again")));
      // Each repeated seq was compared with the history.
      expect(requests.some((request) => request.startsWith("GET history/"))).toBe(true);
      expect(again.bodies.some((body) => (parseMessage(body) as WireMessage).pack !== undefined)).toBe(false);
      expect(again.outcomes.length).not.toBe(first.outcomes.length);
      expect(again.outcomes.slice(0, -1).every((o) => o.kind === "duplicate")).toBe(true);
      expect(again.outcomes.at(-1)).toMatchObject({ kind: "applied", last: 308 });
      const status: SetStatus = await readSetStatus(store, SET);
      expect(status).toMatchObject({ state: "in-sync", lastSeq: 308 });
      expect(status.twoWriters).toBeUndefined();
      expect(status.duplicateUnchecked).toBeUndefined();
    } finally {
      journal.close();
      state.remove();
    }
  });
});

describe("the source host's agent when the target names two writers", () => {
  let h: Harness;
  afterEach(async () => {
    await h.close();
  });

  it("sends no resync while the set is held, and mirrors the set once it is adopted", async () => {
    h = agentHarness(SET, { targetStatus: (set) => readSetStatus(h.store, set) });
    writeFileSync(join(h.src.path, "a.txt"), "the real host's");
    await h.agent.start();
    await h.agent.drain(SET);
    const sent = h.journal.sets.counters(SET).nextSeq - 1;
    // The copy, signing with the same key, sends its own change at the last seq.
    const copy = messageBody(SET, [putRecord(sent, "copy.txt", "the copy's")]);
    expect(await h.transport.applier.applyMessage(signedIncoming("copy-1", SET, copy, h.transport.key))).toEqual({ kind: "held", set: SET });

    await h.agent.checkTarget(SET);
    expect(h.journal.sets.counters(SET).nextSeq - 1).toBe(sent);

    await adoptSet(h.store, SET, h.transport.key);
    await h.agent.checkTarget(SET);
    await h.agent.drain(SET);
    expect(await readSetStatus(h.store, SET)).toMatchObject({ state: "in-sync" });
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  });
});

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
