// A rejected message loses its records, so `tidemark status` names it; the
// agent then finds the gap and resyncs, and the mirror after the resync holds
// what those records would have written. Status named the rejection for a
// whole day even so ("NOT IN SYNC", exit code 1, after the set recovered):
// the applier records when it applied a resync, and a rejection before it no
// longer counts against the set.

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

function facts(target: Partial<SetStatus>): SetFacts {
  return { set: SET, counters: COUNTERS, generation: { id: "g1", sinceSeq: 0 }, target: { status: { ...initialStatus(SET), lastSeq: 10, generation: "g1", ...target } }, now: NOW };
}

const ago = (ms: number) => new Date(NOW.getTime() - ms).toISOString();

describe("a rejected message and the resync after it", () => {
  it("status names a rejection until a resync was applied after it", () => {
    const rejected = { lastRejected: { at: ago(60_000), messageId: "m1", error: "invalid message" } };
    expect(findProblems(facts(rejected)).map((p) => p.kind)).toEqual(["rejected-message"]);
    expect(findProblems(facts({ ...rejected, resyncedAt: ago(30_000) }))).toEqual([]);
    // A resync before the rejection answers nothing of it.
    expect(findProblems(facts({ ...rejected, resyncedAt: ago(90_000) })).map((p) => p.kind)).toEqual(["rejected-message"]);
  });

  it("the applier records when it applied a resync", async () => {
    let now = NOW.getTime();
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {}, now: () => new Date(now) });
    const send = (id: string, records: Parameters<typeof messageBody>[1]) => applier.applyMessage(signedIncoming(id, SET, messageBody(SET, records)));
    const status = async (): Promise<SetStatus> => JSON.parse((await store.get(statusKey(SET)))?.body.toString() ?? "{}") as SetStatus;
    await send("m1", [putRecord(1, "a.txt", "a")]);
    const good = putRecord(2, "b.txt", "b");
    if (good.op !== "put") throw new Error("putRecord made no put");
    expect(await send("bad", [{ ...good, sha256: "0".repeat(64) }])).toMatchObject({ kind: "rejected" });
    expect((await status()).resyncedAt).toBeUndefined();
    now += 1000;
    expect(await send("m3", [putRecord(3, "c.txt", "c")])).toMatchObject({ kind: "gap" });
    now += 1000;
    expect(await send("m4", [{ seq: 4, op: "resync", reason: "seq gap" }, putRecord(5, "b.txt", "b")])).toMatchObject({ kind: "applied" });
    const after = await status();
    expect(after).toMatchObject({ state: "in-sync", resyncedAt: new Date(now).toISOString() });
    expect(Date.parse(after.resyncedAt ?? "")).toBeGreaterThan(Date.parse(after.lastRejected?.at ?? ""));
  });
});
