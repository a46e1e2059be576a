// Journal generations on the target (DESIGN 8): a new generation restarts the
// set's chain instead of having its records dropped as duplicates; an older
// one is refused.

import { beforeEach, describe, expect, it } from "vitest";
import { dataKey, taskResultKey } from "../../contract/layout.ts";
import type { WireMessage, WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MAX_GENERATIONS_KEPT } from "../../lambdas/applier/generations.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { continuityBreak, awaitingGeneration } from "../../agent/continuity.ts";
import { initialStatus } from "../../contract/layout.ts";
import { Journal } from "../../agent/journal.ts";
import { putRecord, signedIncoming } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";

describe("applier generations", () => {
  let store: MemoryStore;
  let applier: Applier;
  let n = 0;
  const deliver = (gen: string | undefined, records: WireRecord[]) => {
    const message: WireMessage = { v: 1, set: SET, ...(gen !== undefined ? { gen } : {}), records };
    return applier.applyMessage(signedIncoming(`m${++n}`, SET, JSON.stringify(message)));
  };
  const text = async (path: string) => (await store.get(dataKey(SET, path)))?.body.toString();
  const puts = (from: number, count: number, prefix = "f") => Array.from({ length: count }, (_, i) => putRecord(from + i, `${prefix}${from + i}`, `v${from + i}`));

  beforeEach(() => {
    store = new MemoryStore();
    applier = new Applier({ store, log: () => {} });
  });

  it("takes the first generation of a set, and continues a chain that predates generations at its next seq", async () => {
    await deliver(undefined, puts(1, 3));
    expect(await deliver("gen1", puts(4, 2))).toMatchObject({ kind: "applied", first: 4, last: 5 });
    const status = await applier.readStatus(SET);
    expect(status).toMatchObject({ lastSeq: 5, state: "in-sync", generation: "gen1" });
    expect(status.generations).toEqual([expect.objectContaining({ id: "gen1", seq: 4 })]);
  });

  it("restarts the chain at a new generation's resync: records with seqs the old chain already had are applied, not dropped", async () => {
    await deliver("gen1", puts(1, 50));
    const outcome = await deliver("gen2", [{ seq: 1, op: "resync", reason: "journal lost" }, putRecord(2, "new", "after the loss"), { seq: 3, op: "delete", path: "f7" }]);
    expect(outcome).toMatchObject({ kind: "applied", first: 1, last: 3 });
    expect(await text("new")).toBe("after the loss");
    expect(await text("f7")).toBeUndefined();
    const status = await applier.readStatus(SET);
    expect(status).toMatchObject({ lastSeq: 3, state: "in-sync", generation: "gen2" });
    expect(status.generations?.map((g) => g.id)).toEqual(["gen1", "gen2"]);
    expect(status.generations?.[1]?.reason).toMatch(/replaces generation gen1 \(applied up to seq 50\): journal lost/);
    // A redelivery of the new generation's message is a duplicate again.
    expect(await deliver("gen2", [{ seq: 1, op: "resync", reason: "journal lost" }, putRecord(2, "new", "after the loss")])).toMatchObject({ kind: "duplicate" });
    expect(await deliver("gen2", [putRecord(4, "later", "x")])).toMatchObject({ kind: "applied", first: 4 });
  });

  it("skips the markers a new generation's resync supersedes, so no one waits for them", async () => {
    await deliver("gen1", puts(1, 10));
    await deliver("gen2", [
      { seq: 1, op: "task", id: "t-superseded", action: "snapshot", timeoutSeconds: 0, insertedAt: new Date(0).toISOString() },
      { seq: 2, op: "resync", reason: "journal restored" },
    ]);
    const result = JSON.parse((await store.get(taskResultKey(SET, "t-superseded")))?.body.toString() ?? "{}") as { status?: string };
    expect(result.status).toBe("skipped");
  });

  it("leaves the generation, the checkpoint and the superseded markers alone when a new generation's restart message is rejected", async () => {
    await deliver("gen1", puts(1, 50));
    const bad = { ...putRecord(3, "x", "content"), sha256: "0".repeat(64) };
    const outcome = await deliver("gen2", [
      { seq: 1, op: "task", id: "t-before-rejected", action: "snapshot", timeoutSeconds: 0, insertedAt: new Date(0).toISOString() },
      { seq: 2, op: "resync", reason: "journal lost" },
      bad,
    ]);
    expect(outcome).toMatchObject({ kind: "rejected" });
    const status = await applier.readStatus(SET);
    expect(status).toMatchObject({ generation: "gen1", lastSeq: 50, state: "in-sync" });
    expect(status.generations?.map((g) => g.id)).toEqual(["gen1"]);
    // Named against the generation it carried, so only a later resync of gen2 supersedes it.
    expect(status.lastRejected).toMatchObject({ seq: 3, generation: "gen2" });
    // Nothing of the message was taken: its marker is not written as skipped.
    expect(await store.get(taskResultKey(SET, "t-before-rejected"))).toBeUndefined();
    // The gen1 host goes on, not locked out by a message nothing of which was applied.
    expect(await deliver("gen1", puts(51, 1))).toMatchObject({ kind: "applied", first: 51 });
  });

  it("holds the set out of sync when a new generation arrives without a resync, and applies nothing of it", async () => {
    await deliver("gen1", puts(1, 20));
    const outcome = await deliver("gen2", [putRecord(1, "f1", "stale content")]);
    expect(outcome).toMatchObject({ kind: "held" });
    expect(await text("f1")).toBe("v1");
    const status = await applier.readStatus(SET);
    expect(status.state).toBe("out-of-sync");
    expect(status.reason).toMatch(/generation gen2 .* without a resync/);
    expect(status.generation).toBe("gen1");
    // Named, so the agent of gen2 resyncs instead of waiting for a resync that will not come.
    expect(status.heldGeneration).toEqual({ id: "gen2", seq: 1 });
    expect(awaitingGeneration({ id: "gen2", sinceSeq: 1 }, status)).toBe(false);
    // The agent's resync in the new generation brings the set back.
    expect(await deliver("gen2", [{ seq: 2, op: "resync", reason: "recover" }, putRecord(3, "f1", "fresh")])).toMatchObject({ kind: "applied" });
    expect(await applier.readStatus(SET)).toMatchObject({ state: "in-sync", generation: "gen2", lastSeq: 3 });
    expect((await applier.readStatus(SET)).heldGeneration).toBeUndefined();
    expect(await text("f1")).toBe("fresh");
  });

  it("refuses a message of a generation the set already left and records why", async () => {
    await deliver("gen1", puts(1, 5));
    await deliver("gen2", [{ seq: 1, op: "resync", reason: "new host" }, putRecord(2, "g", "gen2")]);
    const outcome = await deliver("gen1", [putRecord(6, "old", "from the old journal")]);
    expect(outcome).toMatchObject({ kind: "rejected" });
    expect(await text("old")).toBeUndefined();
    const status = await applier.readStatus(SET);
    expect(status).toMatchObject({ state: "in-sync", generation: "gen2", lastSeq: 2 });
    expect(status.lastRejected?.error).toMatch(/generation gen1, which set "docs" left for generation gen2/);
  });

  it("refuses for good a replayed resync of a generation older than the last MAX_GENERATIONS_KEPT: it restarts nothing and the real host goes on", async () => {
    // The message an eavesdropper captured: generation g0's resync and a file.
    const captured: WireRecord[] = [{ seq: 1, op: "resync", reason: "first journal" }, putRecord(2, "secret", "g0's version")];
    expect(await deliver("g0", captured)).toMatchObject({ kind: "applied" });
    // The host's journal is replaced again and again, until g0 is no longer among the generations kept by id.
    for (let i = 1; i <= MAX_GENERATIONS_KEPT; i++) {
      expect(await deliver(`g${i}`, [{ seq: 1, op: "resync", reason: `journal ${i}` }, putRecord(2, "secret", `g${i}'s version`)])).toMatchObject({ kind: "applied" });
    }
    const before = await applier.readStatus(SET);
    expect(before.generations?.map((g) => g.id)).not.toContain("g0");
    expect(before).toMatchObject({ generation: `g${MAX_GENERATIONS_KEPT}`, lastSeq: 2 });

    const replayed = await deliver("g0", captured);
    expect(replayed).toMatchObject({ kind: "rejected" });
    const after = await applier.readStatus(SET);
    expect(after).toMatchObject({ state: "in-sync", generation: `g${MAX_GENERATIONS_KEPT}`, lastSeq: 2 });
    expect(after.lastRejected?.error).toMatch(/generation g0, which set "docs" left long ago/);
    expect(await text("secret")).toBe(`g${MAX_GENERATIONS_KEPT}'s version`);
    // The real host's next message is applied: it is not locked out.
    expect(await deliver(`g${MAX_GENERATIONS_KEPT}`, [putRecord(3, "later", "x")])).toMatchObject({ kind: "applied", first: 3 });
    // A generation never seen is still taken as new.
    expect(await deliver("fresh", [{ seq: 1, op: "resync", reason: "new host" }])).toMatchObject({ kind: "applied" });
  });

  it("keeps today's rules for messages without a generation", async () => {
    await deliver(undefined, puts(1, 5));
    expect(await deliver(undefined, puts(1, 5))).toMatchObject({ kind: "duplicate" });
    expect(await deliver(undefined, puts(8, 1))).toMatchObject({ kind: "gap", expected: 6, got: 8 });
  });
});

describe("agent continuity check", () => {
  const status = (patch: Partial<ReturnType<typeof initialStatus>>) => ({ ...initialStatus(SET), ...patch });

  it("finds no break with a target that never applied anything, or one this journal is not behind", () => {
    expect(continuityBreak({ id: "a", sinceSeq: 0 }, 0, undefined)).toBeUndefined();
    expect(continuityBreak({ id: "a", sinceSeq: 0 }, 0, status({}))).toBeUndefined();
    expect(continuityBreak({ id: "a", sinceSeq: 0 }, 90, status({ generation: "a", lastSeq: 90 }))).toBeUndefined();
    // A chain that predates generations, continued by this journal.
    expect(continuityBreak({ id: "a", sinceSeq: 0 }, 90, status({ lastSeq: 80 }))).toBeUndefined();
  });

  it("finds a lost journal, a journal restored from an older copy, and an older copy of a journal the target left", () => {
    expect(continuityBreak({ id: "new", sinceSeq: 0 }, 0, status({ generation: "a", lastSeq: 57_689 }))).toMatch(/lost or replaced/);
    expect(continuityBreak({ id: "new", sinceSeq: 0 }, 0, status({ lastSeq: 57_689 }))).toMatch(/lost or replaced/);
    expect(continuityBreak({ id: "a", sinceSeq: 0 }, 6_394, status({ generation: "a", lastSeq: 57_689 }))).toMatch(/restored from an older copy/);
    const left = status({ generation: "b", lastSeq: 3, generations: [{ id: "a", since: "", seq: 1, reason: "" }, { id: "b", since: "", seq: 1, reason: "" }] });
    expect(continuityBreak({ id: "a", sinceSeq: 0 }, 9_000, left)).toMatch(/older copy/);
  });

  it("waits for a generation whose resync is on its way", () => {
    const target = status({ generation: "a", lastSeq: 57_689 });
    expect(awaitingGeneration({ id: "b", sinceSeq: 1 }, target)).toBe(true);
    expect(continuityBreak({ id: "b", sinceSeq: 1 }, 3, target)).toBeUndefined();
    expect(awaitingGeneration({ id: "a", sinceSeq: 0 }, target)).toBe(false);
  });
});

describe("journal generations", () => {
  it("keeps a set's generation across reopenings, gives a new journal a new one, and begins another at the next seq", () => {
    const state = tempDir("tidemark-state-");
    const other = tempDir("tidemark-state-");
    try {
      const journal = Journal.open(state.path);
      expect(journal.sets.knownGeneration(SET)).toBeUndefined();
      const first = journal.sets.generation(SET);
      expect(first).toEqual({ id: expect.stringMatching(/^[0-9a-f]{16}$/), sinceSeq: 0 });
      journal.append(SET, [{ op: "mkdir", path: "d", mode: 0o755, mtimeNs: "1" }]);
      journal.close();
      const reopened = Journal.open(state.path);
      expect(reopened.sets.generation(SET)).toEqual(first);
      const next = reopened.sets.beginGeneration(SET);
      expect(next.id).not.toBe(first.id);
      expect(next.sinceSeq).toBe(2);
      expect(reopened.sets.generation(SET)).toEqual(next);
      reopened.close();
      const fresh = Journal.open(other.path);
      expect(fresh.sets.generation(SET).id).not.toBe(first.id);
      fresh.close();
    } finally {
      state.remove();
      other.remove();
    }
  });
});
