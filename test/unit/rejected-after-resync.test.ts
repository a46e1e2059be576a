// A rejected message loses its records, so `tidemark status` names it; the
// agent then finds the gap and resyncs, and the mirror after the resync holds
// what those records would have written. The applier records the seq of the
// last resync its checkpoint passed and the last seq of a rejected message's
// records: a rejection stops counting once a resync with a greater seq is
// applied. A rejection without seq records (a stale message, an unparsable
// one signed by the owner) is superseded by nothing; nor is the refusal an
// unsigned unparsable one (a console marker with a bad action) is recorded as.

import { describe, expect, it } from "vitest";
import { findProblems, type SetFacts } from "../../agent/set-health.ts";
import type { SetCounters } from "../../agent/journal.ts";
import { initialStatus, statusKey, type SetStatus } from "../../contract/layout.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";

const SET = "docs";
const NOW = new Date("2026-01-02T00:00:00Z");
const COUNTERS: SetCounters = { nextSeq: 11, sentSeq: 10, backlogRecords: 0, backlogBytes: 0, messagesSent: 3, bytesSent: 100, lastSendError: null, overflowed: false, watcherProblem: null };

function facts(target: Partial<SetStatus>, now = NOW): SetFacts {
  return { set: SET, counters: COUNTERS, generation: { id: "g1", sinceSeq: 0 }, target: { status: { ...initialStatus(SET), lastSeq: 10, generation: "g1", ...target } }, now };
}

const ago = (ms: number) => new Date(NOW.getTime() - ms).toISOString();
const kinds = (f: SetFacts) => findProblems(f).map((p) => p.kind);

function harness() {
  let now = NOW.getTime();
  const store = new MemoryStore();
  const applier = new Applier({ store, log: () => {}, now: () => new Date(now) });
  return {
    applier,
    tick: (ms: number) => (now += ms),
    now: () => new Date(now),
    send: (id: string, records: Parameters<typeof messageBody>[1]) => applier.applyMessage(signedIncoming(id, SET, messageBody(SET, records))),
    status: async (): Promise<SetStatus> => JSON.parse((await store.get(statusKey(SET)))?.body.toString() ?? "{}") as SetStatus,
  };
}

function badPut(seq: number, path: string): Parameters<typeof messageBody>[1][number] {
  const good = putRecord(seq, path, "b");
  if (good.op !== "put") throw new Error("putRecord made no put");
  return { ...good, sha256: "0".repeat(64) };
}

describe("a rejected message and the resync after it", () => {
  it("status names a rejection until a resync with a greater seq of the same generation was applied", () => {
    const rejected = { lastRejected: { at: ago(60_000), messageId: "m1", error: "invalid message", seq: 5, generation: "g1" } };
    expect(kinds(facts(rejected))).toEqual(["rejected-message"]);
    expect(kinds(facts({ ...rejected, resynced: { seq: 6, generation: "g1", at: ago(30_000) } }))).toEqual([]);
    // A resync at or before the rejected records answers nothing of them, whenever it was applied.
    expect(kinds(facts({ ...rejected, resynced: { seq: 4, generation: "g1", at: ago(30_000) } }))).toEqual(["rejected-message"]);
    // Nor does one of another generation (its seqs are another chain's).
    expect(kinds(facts({ ...rejected, resynced: { seq: 9, generation: "g0", at: ago(30_000) } }))).toEqual(["rejected-message"]);
    // A rejection without seq records is superseded by no resync.
    const { seq: _seq, generation: _generation, ...noSeq } = rejected.lastRejected;
    expect(kinds(facts({ lastRejected: noSeq, resynced: { seq: 9, generation: "g1", at: ago(30_000) } }))).toEqual(["rejected-message"]);
  });

  it("the applier records the rejected records' seq and the resync's once applied", async () => {
    const h = harness();
    await h.send("m1", [putRecord(1, "a.txt", "a")]);
    expect(await h.send("bad", [badPut(2, "b.txt")])).toMatchObject({ kind: "rejected" });
    expect((await h.status()).lastRejected).toMatchObject({ messageId: "bad", seq: 2 });
    expect((await h.status()).resynced).toBeUndefined();
    h.tick(1000);
    expect(await h.send("m3", [putRecord(3, "c.txt", "c")])).toMatchObject({ kind: "gap" });
    h.tick(1000);
    expect(await h.send("m4", [{ seq: 4, op: "resync", reason: "seq gap" }, putRecord(5, "b.txt", "b")])).toMatchObject({ kind: "applied" });
    const after = await h.status();
    expect(after).toMatchObject({ state: "in-sync", resynced: { seq: 4, at: h.now().toISOString() } });
    expect(kinds(facts(after, h.now()))).toEqual([]);
  });

  it("a rejected message holding a resync records no resync and leaves the set out of sync", async () => {
    const h = harness();
    await h.send("m1", [putRecord(1, "a.txt", "a")]);
    expect(await h.send("m3", [putRecord(3, "c.txt", "c")])).toMatchObject({ kind: "gap" });
    h.tick(1000);
    expect(await h.send("bad", [{ seq: 4, op: "resync", reason: "seq gap" }, badPut(5, "b.txt")])).toMatchObject({ kind: "rejected" });
    const after = await h.status();
    expect(after).toMatchObject({ lastSeq: 1, state: "out-of-sync" });
    expect(after.resynced).toBeUndefined();
    expect(kinds(facts(after, h.now()))).toContain("rejected-message");
  });

  it("a rejected console marker is named as not the owner's and still counts after a later resync", async () => {
    const h = harness();
    await h.send("m1", [putRecord(1, "a.txt", "a")]);
    h.tick(1000);
    // An operator's marker from the console with a typo in its action: rejected, the task never runs.
    const marker = JSON.stringify({ v: 1, set: SET, task: { action: "snapshto" } });
    expect(await h.applier.applyMessage({ messageId: "console-1", groupId: SET, body: marker, attributes: {} })).toMatchObject({ kind: "rejected" });
    h.tick(60_000);
    expect(await h.send("m2", [{ seq: 2, op: "resync", reason: "full mirror requested" }, putRecord(3, "a.txt", "a")])).toMatchObject({ kind: "applied" });
    const after = await h.status();
    // Unsigned, it is named as a refused message not the owner's (the operator's typo, with why), not as one of the owner's records lost.
    expect(after.lastRejected).toBeUndefined();
    expect(after.refused?.last).toMatchObject({ messageId: "console-1", reason: expect.stringMatching(/unreadable message without a signature.*not counted as the owner's/) });
    expect(after.resynced).toMatchObject({ seq: 2 });
    expect(findProblems(facts(after, h.now())).find((p) => p.kind === "refused-sender")?.message).toMatch(/: an unreadable message without a signature.*; nothing of them was applied and none of the owner's messages was lost/);
  });
});
