// Every file the applier writes for a record carries that record's
// "<generation>:<seq>" (lambdas/applier/write-stamps.ts), and a delta whose
// base is gone counts as applied before only when its file was written by it
// or a later record of its generation. A stale target (a difference mirror
// made against content the target never held) whose file a later put of the
// message reverts to what it holds is refused as a base mismatch, not taken
// for a re-applied delta: history never names content the target never held.

import { describe, expect, it } from "vitest";
import { dataKey, stagingKey } from "../../contract/layout.ts";
import { encodeInline, type PutRecord, type WireMessage, type WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { applyDelta } from "../../lambdas/applier/delta-rebuild.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { judgeStamp, WRITTEN_BY } from "../../lambdas/applier/write-stamps.ts";
import { listSegments, readSegment } from "../../lambdas/history/history-store.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import type { HistoryEntry } from "../../contract/history.ts";
import { KillableStore } from "../support/killable-store.ts";
import { putRecord, signedIncoming, signedSqsAttributes } from "../support/messages.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "docs";
const GEN = "G1";
const T0 = 1_800_000_000_000;

function body(records: WireRecord[], extra: Partial<WireMessage> = {}, gen: string = GEN): string {
  const message: WireMessage = { v: 1, set: SET, gen, records, ...extra };
  return JSON.stringify(message);
}

function put(seq: number, path: string, text: string): PutRecord {
  const record = putRecord(seq, path, text);
  if (record.op !== "put") throw new Error("test: putRecord made no put");
  return { ...record, at: T0 + seq * 1000 };
}

/** A delta that takes `path` from `base` to `text`: every byte travels as one range. */
function delta(seq: number, path: string, base: string, text: string): PutRecord {
  return { ...put(seq, path, text), content: encodeInline(Buffer.from(text)), delta: { base: sha(base), blocks: [], ranges: [[0, text.length]] } };
}

/** Same bytes, new mtime: a delta that carries nothing. */
function metadataDelta(seq: number, path: string, text: string): PutRecord {
  return { ...put(seq, path, text), content: encodeInline(Buffer.alloc(0)), delta: { base: sha(text), blocks: [], ranges: [] } };
}

const resync = (seq: number): WireRecord => ({ seq, at: T0 + seq * 1000, op: "resync", reason: "difference mirror after the journal was lost" });

type Mode = "batch" | "message";

function deliverer(store: MemoryStore, mode: Mode): (id: string, text: string) => Promise<boolean> {
  const applier = () => new Applier({ store, log: () => {}, now: () => new Date(T0 + 1_000_000), history: { days: 7 } });
  return async (id, text) => {
    if (mode === "batch") {
      const now = String(Date.now());
      const record = {
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
      return (await createHandler(applier(), () => {})({ Records: [record] })).batchItemFailures.length === 0;
    }
    try {
      await applier().applyMessage(signedIncoming(id, SET, text));
      return true;
    } catch {
      return false;
    }
  };
}

async function historyEntries(store: MemoryStore): Promise<HistoryEntry[]> {
  const entries: HistoryEntry[] = [];
  for (const n of await listSegments(store, SET)) entries.push(...(await readSegment(store, SET, n)));
  return entries;
}

async function stampOf(store: MemoryStore, path: string): Promise<string | undefined> {
  return (await store.head(dataKey(SET, path)))?.meta[WRITTEN_BY];
}

describe("judgeStamp", () => {
  const MINE = sha("mine");
  const LATER = sha("later");
  const OTHER = sha("other");
  const BIG = Number.MAX_SAFE_INTEGER;
  // The delta at seq 5 gives the file MINE; a later put of the file in its message, at seq 9, gives it LATER.
  const later = new Map([[9, LATER]]);
  it.each<[string, string | undefined, string, string | undefined, number, string]>([
    ["no stamp", undefined, MINE, GEN, 5, "unstamped"],
    ["this record, holding its result", "G1:5", MINE, GEN, 5, "applied"],
    ["this record's seq, holding other content (another record at a reused seq)", "G1:5", OTHER, GEN, 5, "not applied"],
    ["a later put of the file in the message, holding its result", "G1:9", LATER, GEN, 5, "applied"],
    ["a later put of the file in the message, holding other content", "G1:9", OTHER, GEN, 5, "not applied"],
    ["a later seq that is no later put of the file in the message", "G1:7", LATER, GEN, 5, "not applied"],
    ["an earlier record", "G1:4", MINE, GEN, 5, "not applied"],
    ["a later seq of another generation", "G0:9", LATER, GEN, 5, "not applied"],
    ["a chain without generations", ":5", MINE, undefined, 5, "applied"],
    ["a chain without generations, judged in one", ":5", MINE, GEN, 5, "not applied"],
    ["a stamp the applier never writes", "G-1:5", MINE, GEN, 5, "unstamped"],
    ["a seq with a leading zero, which the applier never writes", "G1:05", MINE, GEN, 5, "unstamped"],
    ["the largest seq the wire accepts (16 digits)", `G1:${BIG}`, MINE, GEN, BIG, "applied"],
    ["a seq beyond what the wire accepts", "G1:9999999999999999", MINE, GEN, BIG, "unstamped"],
  ])("%s", (_what, stamp, held, generation, seq, verdict) => {
    const meta = { "tidemark-sha256": held, ...(stamp === undefined ? {} : { [WRITTEN_BY]: stamp }) };
    expect(judgeStamp(meta, generation, { seq, sha256: MINE }, later)).toBe(verdict);
  });
});

describe.each<[Mode, boolean]>([
  ["batch", false],
  ["batch", true],
  ["message", false],
  ["message", true],
])("a difference mirror against a stale target (%s, versioned bucket: %s)", (mode, versioned) => {
  // The target holds v1; the agent believes it holds v2, sends a delta v2 -> v3, then the file goes back to v1.
  it.each<[string, (seq: number) => PutRecord]>([
    ["a delta", (seq) => delta(seq, "p", "p v2", "p v3")],
    ["a delta that only changes the mtime", (seq) => metadataDelta(seq, "p", "p v2")],
  ])("%s whose base the target never held is refused, though a later put gives the file what the target holds", async (_what, change) => {
    const store = new MemoryStore({ versioned });
    const deliver = deliverer(store, mode);
    expect(await deliver("m1", body([put(1, "p", "p v1"), put(2, "q", "q v1")]))).toBe(true);
    const refused = change(4);
    expect(await deliver("m2", body([resync(3), refused, put(5, "p", "p v1"), put(6, "q", "q v2")]))).toBe(true);

    const status = await readSetStatus(store, SET);
    expect(status.state).toBe("out-of-sync");
    expect(status.lastSeq).toBe(3);
    expect(status.reason).toMatch(/delta base of p .*\(seq 4\)/);
    // Nothing of the delta nor after it is in history: no moment names content the target never held.
    const entries = await historyEntries(store);
    expect(entries.filter((e) => e.seq >= 4)).toEqual([]);
    expect(entries.filter((e) => e.op === "put" && e.sha256 === refused.sha256)).toEqual([]);
    expect((await store.get(dataKey(SET, "p")))?.body.toString()).toBe("p v1");
    expect(await stampOf(store, "p")).toBe("G1:1");
  });

  it("a new generation's delta is refused though the file was written by a later seq of the old one", async () => {
    const store = new MemoryStore({ versioned });
    const deliver = deliverer(store, mode);
    expect(await deliver("m1", body([put(1, "q", "q v1"), put(2, "q", "q v2"), put(3, "p", "p v1")], {}, "G0"))).toBe(true);
    expect(await stampOf(store, "p")).toBe("G0:3");
    // The lost journal's successor restarts at seq 1: p's stamp (seq 3) is later, but of another generation.
    expect(await deliver("m2", body([resync(1), delta(2, "p", "p v2", "p v3"), put(3, "p", "p v1")]))).toBe(true);
    const status = await readSetStatus(store, SET);
    expect(status.state).toBe("out-of-sync");
    expect(status.reason).toMatch(/delta base of p .*\(seq 2\)/);
    expect((await historyEntries(store)).filter((e) => e.op === "put" && e.sha256 === sha("p v3"))).toEqual([]);
  });

  it("a delta applied again after a kill, its file reverted by a later put, is still taken for applied", async () => {
    for (let killAt = 1; ; killAt++) {
      const store = new KillableStore({ versioned });
      const deliver = deliverer(store, mode);
      expect(await deliver("m1", body([put(1, "p", "p v1")]))).toBe(true);
      const m2 = body([delta(2, "p", "p v1", "p v2"), delta(3, "p", "p v2", "p v3"), put(4, "p", "p v1")]);
      store.failAfter = killAt;
      const through = await deliver("m2", m2);
      store.failAfter = undefined;
      if (through) return;
      expect(await deliver("m2", m2)).toBe(true);
      const status = await readSetStatus(store, SET);
      expect(status.reason, `killed at write ${killAt}`).toBeUndefined();
      expect(status.lastSeq).toBe(4);
      expect((await store.get(dataKey(SET, "p")))?.body.toString()).toBe("p v1");
      expect(await stampOf(store, "p")).toBe("G1:4");
    }
  });
});

describe("the stamp of each write path", () => {
  it("puts (inline, packed, staged), deltas (inline, staged, metadata only) and renames carry their record's generation:seq", async () => {
    const store = new MemoryStore();
    const deliver = deliverer(store, "message");
    const staged = put(3, "staged", "staged v1");
    await store.put(stagingKey(SET, 3, staged.sha256), Buffer.from("staged v1"));
    const pack = Buffer.from("packed v1");
    const packSha = sha(pack.toString());
    await store.put(stagingKey(SET, 1, packSha), pack);
    const packed: PutRecord = { ...put(2, "packed", "packed v1"), content: { kind: "packed", encoding: "raw", offset: 0, length: pack.length } };
    expect(await deliver("m1", body([put(1, "inline", "inline v1"), packed, { ...staged, content: { kind: "staged" } }], { pack: { size: pack.length, sha256: packSha } }))).toBe(true);
    expect([await stampOf(store, "inline"), await stampOf(store, "packed"), await stampOf(store, "staged")]).toEqual(["G1:1", "G1:2", "G1:3"]);

    const stagedDelta = delta(5, "staged", "staged v1", "staged v2");
    await store.put(stagingKey(SET, 5, stagedDelta.sha256), Buffer.from("staged v2"));
    const records: WireRecord[] = [
      delta(4, "inline", "inline v1", "inline v2"),
      { ...stagedDelta, content: { kind: "staged" } },
      metadataDelta(6, "packed", "packed v1"),
      { seq: 7, op: "rename", from: "staged", to: "moved" },
    ];
    expect(await deliver("m2", body(records))).toBe(true);
    expect((await readSetStatus(store, SET)).reason).toBeUndefined();
    expect([await stampOf(store, "inline"), await stampOf(store, "moved"), await stampOf(store, "packed")]).toEqual(["G1:4", "G1:7", "G1:6"]);
  });

  it("a renamed symlink carries no stamp (a long link target fills most of S3's 2 KB of metadata); a renamed file does", async () => {
    const store = new MemoryStore();
    const deliver = deliverer(store, "message");
    const link: WireRecord = { seq: 1, at: T0 + 1000, op: "symlink", path: "link", target: "t".repeat(1500), mtimeNs: "1" };
    expect(await deliver("m1", body([link, put(2, "file", "file v1")]))).toBe(true);
    const records: WireRecord[] = [
      { seq: 3, op: "rename", from: "link", to: "moved-link" },
      { seq: 4, op: "rename", from: "file", to: "moved-file" },
    ];
    expect(await deliver("m2", body(records))).toBe(true);
    expect((await readSetStatus(store, SET)).reason).toBeUndefined();
    expect((await store.head(dataKey(SET, "moved-link")))?.meta["tidemark-kind"]).toBe("symlink");
    expect(await stampOf(store, "moved-link")).toBeUndefined();
    expect(await stampOf(store, "moved-file")).toBe("G1:4");
  });

  it("a delta rebuilt as a stream (a large file) writes the stamp it is given", async () => {
    const store = new MemoryStore();
    const base = Buffer.alloc(3 * 1024 * 1024, 7);
    const next = Buffer.from(base);
    next.write("changed", 10);
    const key = dataKey(SET, "big");
    const record = {
      ...put(9, "big", ""),
      size: next.length,
      sha256: sha(next),
      content: encodeInline(Buffer.from("changed")),
      delta: { base: sha(base), blocks: [], ranges: [[10, 7]] as [number, number][] },
    };
    await store.put(key, base, { "tidemark-sha256": record.delta.base });
    await applyDelta(store, key, record, { bytes: Buffer.from("changed") }, { [WRITTEN_BY]: "G1:9" }, { inMemoryBytes: 1024 });
    const head = await store.head(key);
    expect(head?.meta[WRITTEN_BY]).toBe("G1:9");
    expect((await store.get(key))?.body.equals(next)).toBe(true);
  });
});

/** A killable store that counts the reads of one key's content. */
class ReadCountingStore extends KillableStore {
  reads = 0;
  readonly #key: string;
  constructor(key: string) {
    super();
    this.#key = key;
  }
  override async get(key: string, versionId?: string) {
    if (key === this.#key) this.reads += 1;
    return super.get(key, versionId);
  }
}

describe("a delta applied again that finds its own stamp", () => {
  it.each<Mode>(["batch", "message"])("does not read the file to prove it holds the delta's content (%s)", async (mode) => {
    let proven = 0;
    for (let killAt = 1; ; killAt++) {
      const store = new ReadCountingStore(dataKey(SET, "p"));
      const deliver = deliverer(store, mode);
      expect(await deliver("m1", body([put(1, "p", "p v1")]))).toBe(true);
      const m2 = body([delta(2, "p", "p v1", "p v2"), put(3, "q", "q v1")]);
      store.failAfter = killAt;
      const through = await deliver("m2", m2);
      store.failAfter = undefined;
      if (through) break;
      const stamped = (await stampOf(store, "p")) === "G1:2";
      store.reads = 0;
      expect(await deliver("m2", m2)).toBe(true);
      const reads = store.reads;
      expect((await store.get(dataKey(SET, "p")))?.body.toString()).toBe("p v2");
      if (!stamped) continue;
      proven += 1;
      expect(reads, `killed at write ${killAt}`).toBe(0);
    }
    expect(proven).toBeGreaterThan(0);
  });
});

describe("files written before stamps", () => {
  it.each<Mode>(["batch", "message"])("a delta applied again finds them judged by content, as before stamps (%s)", async (mode) => {
    let judged = 0;
    for (let killAt = 1; ; killAt++) {
      const store = new KillableStore();
      const deliver = deliverer(store, mode);
      expect(await deliver("m1", body([put(1, "p", "p v1")]))).toBe(true);
      const m2 = body([delta(2, "p", "p v1", "p v2"), put(3, "p", "p v3")]);
      store.failAfter = killAt;
      const through = await deliver("m2", m2);
      store.failAfter = undefined;
      if (through) break;
      // The first delivery was an applier from before stamps: what it wrote carries none.
      const key = dataKey(SET, "p");
      const live = await store.get(key);
      if (!live) throw new Error("test: p vanished");
      const { [WRITTEN_BY]: stamp, ...unstamped } = live.meta;
      if (stamp === "G1:3") judged += 1;
      await store.put(key, live.body, unstamped);
      expect(await deliver("m2", m2)).toBe(true);
      const status = await readSetStatus(store, SET);
      expect(status.reason, `killed at write ${killAt}`).toBeUndefined();
      expect((await store.get(key))?.body.toString()).toBe("p v3");
    }
    expect(judged).toBeGreaterThan(0);
  });
});
