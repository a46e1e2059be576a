// A marker sent straight to the queue holds the set's stream while its action
// runs (the set's messages wait behind it): the set's status names it, and
// `tidemark status` says which marker, since when and what it waits for.

import { describe, expect, it } from "vitest";
import { statusKey, type SetStatus } from "../../contract/layout.ts";
import { queueMarkerHolding, queueMarkerLine } from "../../agent/commands/status.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MarkerContinuesError } from "../../lambdas/applier/markers.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";

const SET = "db";

describe("a queue marker's action", () => {
  it("is named in the set's status while it runs, and no longer once it ended", async () => {
    const store = new MemoryStore();
    let during: SetStatus | undefined;
    const applier = new Applier({
      store,
      log: () => {},
      now: () => new Date("2026-12-01T05:00:00Z"),
      tasks: {
        actions: {
          event: {
            run: async () => {
              during = await readSetStatus(store, SET);
              return {};
            },
          },
        },
      },
    });
    expect(await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])))).toMatchObject({ kind: "applied" });
    const body = JSON.stringify({ v: 1, set: SET, task: { id: "rogue-1", action: "event", label: "rogue", timeoutSeconds: 900 } });
    expect(await applier.applyMessage({ messageId: "q1", groupId: SET, body, senderId: "AIDAOPS:alice" })).toMatchObject({ kind: "marker", task: "rogue-1", status: "succeeded" });
    expect(during?.queueMarker).toEqual({ id: "rogue-1", since: "2026-12-01T05:00:00.000Z", action: "event", label: "rogue", timeoutSeconds: 900, sender: "AIDAOPS:alice" });
    expect((await readSetStatus(store, SET)).queueMarker).toBeUndefined();
  });

  it("is still named while its snapshot goes on in the next invocation, and no longer once it ended", async () => {
    // Its verification reads the live objects slowly: an invocation with no time left stops in it.
    const store = new (class extends MemoryStore {
      override async head(key: string) {
        if (key.startsWith("data/")) await new Promise((resolve) => setTimeout(resolve, 20));
        return super.head(key);
      }
    })();
    let now = Date.parse("2026-12-01T05:00:00Z");
    const applier = new Applier({ store, log: () => {}, now: () => new Date(now) });
    expect(await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])))).toMatchObject({ kind: "applied" });
    const queued = { messageId: "q1", groupId: SET, body: JSON.stringify({ v: 1, set: SET, task: { id: "long-1", action: "snapshot" } }) };
    // No time left in this invocation: the snapshot saves its progress and goes on in the next.
    await expect(applier.applyMessage(queued, { remainingMs: () => 0 })).rejects.toThrow(MarkerContinuesError);
    expect((await readSetStatus(store, SET)).queueMarker).toMatchObject({ id: "long-1", since: "2026-12-01T05:00:00.000Z", action: "snapshot" });
    now += 60_000;
    expect(await applier.applyMessage(queued, { remainingMs: () => 600_000 })).toMatchObject({ kind: "marker", task: "long-1", status: "succeeded" });
    expect((await readSetStatus(store, SET)).queueMarker).toBeUndefined();
  });

  it("writes nothing to the set's status when it does not hold the stream (timeout 0)", async () => {
    // A timeout-0 marker wrote the status twice (named, then cleared) and read as holding the stream meanwhile.
    const statusPuts: SetStatus["queueMarker"][] = [];
    const store = new (class extends MemoryStore {
      override async put(key: string, body: Buffer, options: Parameters<MemoryStore["put"]>[2]) {
        if (key === statusKey(SET)) statusPuts.push((JSON.parse(body.toString("utf8")) as SetStatus).queueMarker);
        return super.put(key, body, options);
      }
    })();
    let during: SetStatus | undefined;
    const applier = new Applier({
      store,
      log: () => {},
      tasks: {
        actions: {
          event: {
            run: async () => {
              during = await readSetStatus(store, SET);
              return {};
            },
          },
        },
      },
    });
    expect(await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])))).toMatchObject({ kind: "applied" });
    statusPuts.length = 0;
    const body = JSON.stringify({ v: 1, set: SET, task: { id: "beside-1", action: "event", timeoutSeconds: 0 } });
    const outcome = await applier.applyMessage({ messageId: "q1", groupId: SET, body, senderId: "AIDAOPS:alice" });
    expect(outcome).toMatchObject({ kind: "marker", task: "beside-1" });
    expect(during).toBeDefined();
    expect(during?.queueMarker).toBeUndefined();
    // One write: the marker's entry in the set's history (`tidemark timeline`); the named-then-cleared pair is gone (3 before).
    expect(statusPuts).toEqual([undefined]);
  });

  it("is still named with timeout 0 when it holds the stream all the same: a snapshot action", async () => {
    // A snapshot is the state at the marker, taken before anything after it is applied: it holds the stream whatever
    // its timeout (only timeout-0 markers that run beside the stream go unnamed).
    const store = new (class extends MemoryStore {
      override async head(key: string) {
        if (key.startsWith("data/")) await new Promise((resolve) => setTimeout(resolve, 20));
        return super.head(key);
      }
    })();
    const applier = new Applier({ store, log: () => {}, now: () => new Date("2026-12-01T05:00:00Z") });
    expect(await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])))).toMatchObject({ kind: "applied" });
    const queued = { messageId: "q1", groupId: SET, body: JSON.stringify({ v: 1, set: SET, task: { id: "snap-0", action: "snapshot", timeoutSeconds: 0 } }) };
    await expect(applier.applyMessage(queued, { remainingMs: () => 0 })).rejects.toThrow(MarkerContinuesError);
    expect((await readSetStatus(store, SET)).queueMarker).toMatchObject({ id: "snap-0", action: "snapshot", timeoutSeconds: 0 });
    expect(await applier.applyMessage(queued, { remainingMs: () => 600_000 })).toMatchObject({ kind: "marker", task: "snap-0", status: "succeeded" });
    expect((await readSetStatus(store, SET)).queueMarker).toBeUndefined();
  });

  it("is still named with timeout 0 when it holds the stream all the same: an action with snapshot: true", async () => {
    const store = new MemoryStore();
    let during: SetStatus | undefined;
    const applier = new Applier({
      store,
      log: () => {},
      now: () => new Date("2026-12-01T05:00:00Z"),
      tasks: {
        actions: {
          event: {
            run: async () => {
              during = await readSetStatus(store, SET);
              return {};
            },
          },
        },
      },
    });
    expect(await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])))).toMatchObject({ kind: "applied" });
    const body = JSON.stringify({ v: 1, set: SET, task: { id: "event-snap-0", action: "event", timeoutSeconds: 0, snapshot: true } });
    expect(await applier.applyMessage({ messageId: "q1", groupId: SET, body, senderId: "AIDAOPS:alice" })).toMatchObject({ kind: "marker", task: "event-snap-0", status: "succeeded" });
    expect(during?.queueMarker).toEqual({ id: "event-snap-0", since: "2026-12-01T05:00:00.000Z", action: "event", timeoutSeconds: 0, sender: "AIDAOPS:alice" });
    expect((await readSetStatus(store, SET)).queueMarker).toBeUndefined();
  });

  it("is told by `tidemark status` with its id, since when, its sender and what the stream waits for", () => {
    const marker = { id: "rogue-1", since: "2026-12-01T05:00:00.000Z", action: "snapshot", label: "rogue", timeoutSeconds: 900, sender: "AIDAOPS:alice" };
    expect(queueMarkerLine(marker, new Date("2026-12-01T05:01:00Z"))).toBe(
      'marker rogue-1 ("rogue"), sent straight to the queue (not by this host\'s agent; sender AIDAOPS:alice), holds the set\'s stream since 2026-12-01T05:00:00.000Z: the set\'s messages wait until its snapshot action ends',
    );
    // An action that does not go on across invocations holds the stream for its timeout at most.
    expect(queueMarkerLine({ ...marker, action: "invoke" }, new Date("2026-12-01T05:01:00Z"))).toMatch(/until its invoke action ends, for at most 900 s$/);
    expect(queueMarkerLine(marker, new Date("2026-12-01T06:00:00Z"))).toMatch(/longer than its timeout and an invocation: the applier likely stopped in it/);
  });

  it("is no longer named once the target applied the set's messages after its start (its message left: finished, or to the dead-letter queue)", () => {
    const marker = { id: "long-1", since: "2026-12-01T05:00:00.000Z", action: "snapshot", timeoutSeconds: 900 };
    expect(queueMarkerHolding({ queueMarker: marker, appliedAt: "2026-12-01T04:59:00.000Z" })).toEqual(marker);
    expect(queueMarkerHolding({ queueMarker: marker })).toEqual(marker);
    expect(queueMarkerHolding({ queueMarker: marker, appliedAt: "2026-12-01T08:00:00.000Z" })).toBeUndefined();
  });
});
