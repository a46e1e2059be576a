import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { stagingKey } from "../../contract/layout.ts";
import { barrierScan } from "../../agent/scan.ts";
import { PackedAhead, packNext, sendNext, STAGE_CONCURRENCY } from "../../agent/sender.ts";
import { parseMessage, serializeMessage, type WireMessage } from "../../contract/wire.ts";
import type { StagedPayload, Transport } from "../../agent/transport/transport.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";

/** A transport whose stage calls wait until released, counting how many are in flight. */
class GatedTransport implements Transport {
  readonly events: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  failKey: string | undefined;
  readonly #waiting: (() => void)[] = [];

  async stage(payload: StagedPayload): Promise<void> {
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.events.push(`stage ${payload.key}`);
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
    this.inFlight -= 1;
    if (payload.key === this.failKey) throw new Error(`staging ${payload.key} failed`);
  }

  async send(): Promise<void> {
    this.events.push("send");
  }

  /** Lets every stage call waiting now finish; answers how many there were. */
  release(): number {
    const waiting = this.#waiting.splice(0);
    for (const resolve of waiting) resolve();
    return waiting.length;
  }
}

let src: ReturnType<typeof tempDir>;
let state: ReturnType<typeof tempDir>;
let journal: Journal;
const JOURNALED_AT = Date.parse("2026-11-30T10:00:00Z");

beforeEach(async () => {
  src = tempDir("tidemark-src-");
  state = tempDir("tidemark-state-");
  // One clock for every journal here: records carry when they were journaled, and two journals of the same changes compare equal.
  journal = Journal.open(state.path, { now: () => JOURNALED_AT });
  // Too large to travel inline, small enough that one message names them all.
  for (let i = 0; i < 6; i++) writeFileSync(join(src.path, `large-${i}.bin`), randomBytes(300 * 1024));
  await barrierScan(journal, { name: SET, root: src.path, exclude: [] });
});

afterEach(() => {
  journal.close();
  src.remove();
  state.remove();
});

it("packs the very text serializeMessage writes for the message, which the contract's parser reads back whole", () => {
  const small = Buffer.from("small 😀 content, inline");
  journal.append(SET, [
    { op: "mkdir", path: "😀 𝄞 日本 \"q\"", mode: 0o755, mtimeNs: "1" },
    { op: "put", path: "😀 𝄞 日本 \"q\"/note.txt", size: small.length, mode: 0o644, mtimeNs: "2", sha256: "a".repeat(64), content: { bytes: small } },
    { op: "symlink", path: "link \"to\"", target: "../😀", mtimeNs: "3" },
    { op: "delete", path: "gone 𝄞" },
  ]);
  const packed = packNext(journal, SET);
  if (!packed) throw new Error("nothing was packed");
  const parsed = parseMessage(packed.body) as WireMessage;
  // Staged payloads and inline records alike, the header first: nothing the parser drops, nothing the contract would write otherwise.
  expect(parsed.records.map((r) => r.op)).toEqual(["put", "put", "put", "put", "put", "put", "mkdir", "put", "symlink", "delete"]);
  expect(parsed).toEqual(JSON.parse(packed.body));
  // The small file goes in the message's pack here: the backlog of large files is larger than messages carry inline.
  expect(parsed.pack).toBeDefined();
  expect(packed.body).toBe(serializeMessage({ v: 1, set: SET, gen: packed.gen, ...(parsed.pack ? { pack: parsed.pack } : {}), records: (JSON.parse(packed.body) as WireMessage).records }));
});

/** Releases stage calls as they come until the send settles. */
async function settle(transport: GatedTransport, sending: Promise<unknown>): Promise<void> {
  let done = false;
  const finished = sending.then(
    () => (done = true),
    () => (done = true),
  );
  while (!done) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    transport.release();
  }
  await finished;
}

it("stages a message's payloads a few at a time, and sends the message only once all are staged", async () => {
  const transport = new GatedTransport();
  const sending = sendNext(journal, transport, SET, { compression: "none" });
  await settle(transport, sending);
  const result = await sending;
  expect(result.records).toBe(6);
  expect(transport.events.filter((e) => e.startsWith("stage"))).toHaveLength(6);
  expect(transport.events.at(-1)).toBe("send");
  expect(transport.maxInFlight).toBe(STAGE_CONCURRENCY);
  expect(journal.sets.counters(SET).backlogRecords).toBe(0);
});

it("sends nothing, and keeps every record, when one payload fails to stage", async () => {
  const transport = new GatedTransport();
  const third = journal.pending(SET, 0, 10)[2];
  if (third?.op !== "put") throw new Error("expected the third record to be a put");
  transport.failKey = stagingKey(SET, third.seq, third.sha256);
  const sending = sendNext(journal, transport, SET, { compression: "none" });
  await settle(transport, sending);
  await expect(sending).rejects.toThrow(/staging .* failed/);
  expect(transport.events).not.toContain("send");
  expect(journal.sets.counters(SET).backlogRecords).toBe(6);
});

describe("packing the next message while one is on the wire", () => {
  /** A transport whose sends wait until released, keeping each body. */
  class HeldSends implements Transport {
    readonly bodies: string[] = [];
    fail: Error | undefined;
    #release: (() => void) | undefined;
    async stage(): Promise<void> {}
    async send(_set: string, _id: string, body: string): Promise<void> {
      this.bodies.push(body);
      await new Promise<void>((resolve) => (this.#release = resolve));
      if (this.fail) throw this.fail;
    }
    release(): void {
      this.#release?.();
    }
  }

  const seqsOf = (body: string) => (JSON.parse(body) as { records: { seq: number }[] }).records.map((r) => r.seq);
  const until = async (check: () => boolean) => {
    while (!check()) await new Promise((resolve) => setTimeout(resolve, 1));
  };

  beforeEach(async () => {
    // Incompressible files that fill several messages, inline (not packed: packing ahead is about messages, packs are tested apart).
    for (let i = 0; i < 40; i++) writeFileSync(join(src.path, `small-${String(i).padStart(2, "0")}.bin`), randomBytes(30 * 1024));
    await barrierScan(journal, { name: SET, root: src.path, exclude: [] });
    // Staged ones are in other tests; these only travel inline.
    journal.markSent(SET, 6, 0);
  });

  it("packs the next message during the send, and sends it as packed", async () => {
    const transport = new HeldSends();
    const ahead = new PackedAhead();
    const pending = vi.spyOn(journal, "pending");
    const first = sendNext(journal, transport, SET, { compression: "none", packBytes: 0, ahead });
    await until(() => transport.bodies.length === 1);
    const firstLast = seqsOf(transport.bodies[0] ?? "").at(-1) ?? 0;
    await until(() => pending.mock.calls.some(([, after]) => after === firstLast));
    // The next message was read from the journal before the queue answered for this one.
    transport.release();
    await first;

    const expected = packNext(journal, SET, { compression: "none", packBytes: 0 });
    pending.mockClear();
    const second = sendNext(journal, transport, SET, { compression: "none", packBytes: 0, ahead });
    await until(() => transport.bodies.length === 2);
    // Taken as held: the journal was not read again from its oldest unsent record (only past it, packing the third).
    expect(pending.mock.calls.filter(([, after]) => after === 0)).toEqual([]);
    expect(transport.bodies[1]).toBe(expected?.body);
    expect(seqsOf(transport.bodies[1] ?? "")[0]).toBe(firstLast + 1);
    transport.release();
    await second;
    pending.mockRestore();
  });

  it("sends every record once and in order, the same messages as without packing ahead", async () => {
    const drain = async (ahead?: PackedAhead) => {
      const transport: Transport = { stage: async () => undefined, send: async (_s, _i, body) => void bodies.push(body) };
      const bodies: string[] = [];
      while ((await sendNext(journal, transport, SET, { compression: "none", packBytes: 0, ...(ahead ? { ahead } : {}) })).records > 0);
      return bodies;
    };
    const sent = journal.sets.counters(SET).sentSeq;
    const withAhead = await drain(new PackedAhead());
    const seqs = withAhead.flatMap(seqsOf);
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => sent + 1 + i));
    expect(withAhead.length).toBeGreaterThan(2);

    // The same backlog again, without packing ahead: the same messages.
    const again = tempDir("tidemark-state-");
    const other = Journal.open(again.path, { now: () => JOURNALED_AT });
    try {
      await barrierScan(other, { name: SET, root: src.path, exclude: [] });
      other.markSent(SET, 6, 0);
      const bodies: string[] = [];
      while ((await sendNext(other, { stage: async () => undefined, send: async (_s, _i, body) => void bodies.push(body) }, SET, { compression: "none", packBytes: 0 })).records > 0);
      // Each journal has a generation of its own: the records are what must match.
      const records = (all: string[]) => all.map((body) => (JSON.parse(body) as { records: unknown }).records);
      expect(records(bodies)).toEqual(records(withAhead));
    } finally {
      other.close();
      again.remove();
    }
  });

  it("packs again when what it holds is no longer the next message: a failed send, or records journaled behind a message that was not full", async () => {
    const transport = new HeldSends();
    const ahead = new PackedAhead();
    transport.fail = new Error("queue unreachable");
    const failing = sendNext(journal, transport, SET, { compression: "none", packBytes: 0, ahead });
    await until(() => transport.bodies.length === 1);
    await new Promise((resolve) => setImmediate(resolve));
    transport.release();
    await expect(failing).rejects.toThrow("queue unreachable");
    // Nothing was marked sent: the same message goes again, not the one packed behind it.
    transport.fail = undefined;
    const retry = sendNext(journal, transport, SET, { compression: "none", packBytes: 0, ahead });
    await until(() => transport.bodies.length === 2);
    expect(transport.bodies[1]).toBe(transport.bodies[0]);
    transport.release();
    await retry;

    // Drain to the last message, which is not full; while it is held, a change is journaled.
    const drainUntilLast = async () => {
      for (;;) {
        const { sentSeq, nextSeq } = journal.sets.counters(SET);
        const next = packNext(journal, SET, { compression: "none", packBytes: 0 }, sentSeq);
        if (!next || next.last === nextSeq - 1) return;
        const sending = sendNext(journal, transport, SET, { compression: "none", packBytes: 0, ahead });
        await until(() => transport.bodies.length > 0 && seqsOf(transport.bodies.at(-1) ?? "")[0] === sentSeq + 1);
        transport.release();
        await sending;
      }
    };
    await drainUntilLast();
    const [late] = journal.append(SET, [{ op: "mkdir", path: "late", mode: 0o755, mtimeNs: "0" }]);
    const last = sendNext(journal, transport, SET, { compression: "none", packBytes: 0, ahead });
    await until(() => seqsOf(transport.bodies.at(-1) ?? "").includes(late ?? -1));
    transport.release();
    await last;
    expect(journal.sets.counters(SET).backlogRecords).toBe(0);
  });

  it("lets a message packed whole go when its applier stopped reading whole packs while it was held (a stack rolled back)", async () => {
    // Small text files: they travel in the message's pack.
    for (let i = 0; i < 20; i++) writeFileSync(join(src.path, `text-${i}.txt`), `line ${i} of a text file\n`.repeat(100));
    await barrierScan(journal, { name: SET, root: src.path, exclude: [] });
    const { sentSeq } = journal.sets.counters(SET);
    const whole = { compression: "zstd", wholePacks: true } as const;
    const heldWhole = () => {
      const ahead = new PackedAhead();
      ahead.pack(journal, SET, whole, sentSeq);
      return ahead;
    };
    const expected = packNext(journal, SET, whole, sentSeq);
    expect((parseMessage(expected?.body ?? "") as WireMessage).pack?.encoding).toBeDefined();
    // Still read: the held message goes as packed.
    expect(heldWhole().take(journal, SET, true)?.body).toBe(expected?.body);
    // No longer read: packed again, per file, by the sender.
    expect(heldWhole().take(journal, SET, false)).toBeUndefined();
    expect(heldWhole().take(journal, SET)).toBeUndefined();
    // A message packed per file is read by every applier, whichever the sender now uses.
    const perFile = new PackedAhead();
    perFile.pack(journal, SET, { compression: "zstd" }, sentSeq);
    expect(perFile.take(journal, SET, true)).toBeDefined();
  });
});
