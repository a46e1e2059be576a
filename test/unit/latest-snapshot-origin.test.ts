// `--snapshot latest` is the newest snapshot, whether a marker of the agent's
// stream or one sent straight to the queue made it; restore and drill say
// which it resolved to and where it came from, and name the newest of the
// agent's stream when a queue marker's is newer.

import { describe, expect, it } from "vitest";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { latestJson, latestLine, latestSnapshot, originKind, originPhrase } from "../../agent/snapshot-origin.ts";
import { resolveRecoveryPoint } from "../../agent/recovery-points.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";

const SET = "db";

async function setWithSnapshots(): Promise<{ store: MemoryStore; applier: Applier; tick: () => void }> {
  const store = new MemoryStore();
  let now = Date.parse("2026-12-01T04:00:00Z");
  const applier = new Applier({ store, log: () => {}, now: () => new Date(now) });
  const send = messageBody(SET, [putRecord(1, "a.db", "quiesced"), { seq: 2, op: "task", id: "nightly", action: "snapshot", timeoutSeconds: 60 }]);
  expect(await applier.applyMessage(signedIncoming("m1", SET, send))).toMatchObject({ kind: "applied" });
  return { store, applier, tick: () => (now += 60_000) };
}

describe("--snapshot latest", () => {
  it("is the agent's stream's snapshot, said so, while no queue marker came after it", async () => {
    const { store } = await setWithSnapshots();
    const latest = await latestSnapshot(store, SET);
    expect(latest?.summary).toMatchObject({ taskId: "nightly", seq: 2 });
    expect(latest?.newestFromStream).toBeUndefined();
    expect(latest && latestLine(latest)).toMatch(/^--snapshot latest is snap-nightly \(taken 2026-12-01T04:00:00.000Z\), from marker nightly at seq 2 of the agent's stream$/);
  });

  it("is a newer queue marker's snapshot, said to be one, with the newest of the agent's stream named", async () => {
    const { store, applier, tick } = await setWithSnapshots();
    tick();
    const body = JSON.stringify({ v: 1, set: SET, task: { id: "rogue", action: "snapshot", label: "rogue" } });
    expect(await applier.applyMessage({ messageId: "q1", groupId: SET, body })).toMatchObject({ kind: "marker", status: "succeeded" });
    const latest = await latestSnapshot(store, SET);
    expect(latest?.summary).toMatchObject({ taskId: "rogue", seq: null });
    expect(latest?.newestFromStream).toMatchObject({ id: "snap-nightly" });
    expect(latest && latestLine(latest)).toBe(
      "--snapshot latest is snap-rogue (taken 2026-12-01T04:01:00.000Z), from marker rogue sent straight to the queue (no seq: the target's state when it arrived, crash-consistent, not a point of the agent's stream); the newest from the agent's stream is snap-nightly (taken 2026-12-01T04:00:00.000Z): give `--snapshot snap-nightly` for it",
    );
    expect(latest && latestJson(latest)).toEqual({ id: "snap-rogue", takenAt: "2026-12-01T04:01:00.000Z", taskId: "rogue", seq: null, origin: "queue", newestFromStream: "snap-nightly" });
    // A drill of `latest` reports the same snapshot, its seq null: its report line says it came from the queue.
    const point = await resolveRecoveryPoint(store, SET, {});
    expect(point.description).toMatchObject({ kind: "snapshot", id: "snap-rogue", taskId: "rogue", seq: null });
    expect(originKind(point.description)).toBe("queue");
    expect(originPhrase(point.description)).toMatch(/^, from marker rogue sent straight to the queue/);
    expect(originPhrase({ taskId: "t", seq: undefined })).toBe("");
  });
});
