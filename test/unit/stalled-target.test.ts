// A target that has not applied a message sent long ago, and has applied
// nothing since long before, is named as stalled: "catching up" would never
// end (the applier failing on a message until the dead-letter queue takes it,
// or not running). The journal keeps when recent messages were sent; the
// clocks are stepped by hand.

import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Journal, type Change } from "../../agent/journal.ts";
import { findProblems, STALLED_MS, type SetFacts } from "../../agent/set-health.ts";
import { initialStatus, type SetStatus } from "../../contract/layout.ts";
import { tempDir } from "../support/tree.ts";

const T0 = Date.parse("2026-11-30T08:00:00Z");
const change = (path: string): Change => ({ op: "delete", path });

describe("when messages were sent", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.remove());

  it("finds the oldest message the target has not applied all of, and forgets sends older than two hours", () => {
    let now = T0;
    const journal = Journal.open(dir.path, { now: () => now });
    journal.append("www", [change("a"), change("b")]);
    journal.markSent("www", 2, 100);
    now += 60_000;
    journal.append("www", [change("c")]);
    journal.markSent("www", 3, 100);
    expect(journal.sets.firstSendAfter("www", 0)).toEqual({ seq: 2, at: T0 });
    expect(journal.sets.firstSendAfter("www", 1)).toEqual({ seq: 2, at: T0 });
    expect(journal.sets.firstSendAfter("www", 2)).toEqual({ seq: 3, at: T0 + 60_000 });
    expect(journal.sets.firstSendAfter("www", 3)).toBeUndefined();
    expect(journal.sets.firstSendAfter("other", 0)).toBeUndefined();

    now += 3 * 3_600_000;
    journal.append("www", [change("d")]);
    journal.markSent("www", 4, 100);
    expect(journal.sets.firstSendAfter("www", 0)).toEqual({ seq: 4, at: now });
    journal.close();
  });
});

describe("a stalled target", () => {
  const NOW = new Date(T0 + 2 * STALLED_MS);
  const facts = (target: Partial<SetStatus>, more: Partial<SetFacts> = {}): SetFacts => ({
    set: "www",
    counters: { nextSeq: 11, sentSeq: 10, backlogRecords: 0, backlogBytes: 0, messagesSent: 3, bytesSent: 100, lastSendError: null, overflowed: false, watcherProblem: null },
    generation: { id: "g1", sinceSeq: 0 },
    target: { status: { ...initialStatus("www"), lastSeq: 8, generation: "g1", updatedAt: new Date(T0).toISOString(), ...target } },
    now: NOW,
    ...more,
  });
  const kinds = (f: SetFacts) => findProblems(f).map((p) => p.kind);
  const longAgo = { seq: 10, at: T0 + 1000 };

  it("is named when a message sent over STALLED_MS ago is not applied and the target has not moved for as long", () => {
    const [problem] = findProblems(facts({}, { unapplied: longAgo }));
    expect(problem?.kind).toBe("target-stalled");
    expect(problem?.message).toBe(
      `the target has not applied seq 10, sent at ${new Date(T0 + 1000).toISOString()}, and applied nothing since ${new Date(T0).toISOString()}: the applier is failing on it or not running (see its logs, and the dead-letter queue)`,
    );
  });

  it("is not named while the target keeps applying, the message is recent, a marker's action holds the stream, or another problem says more", () => {
    // Nothing unapplied, or sent recently (a set idle for hours that just sent).
    expect(kinds(facts({}))).toEqual([]);
    expect(kinds(facts({}, { unapplied: { seq: 10, at: NOW.getTime() - 1000 } }))).toEqual([]);
    // A busy applier working through a long queue: it moved recently.
    expect(kinds(facts({ updatedAt: new Date(NOW.getTime() - 60_000).toISOString() }, { unapplied: longAgo }))).toEqual([]);
    expect(kinds(facts({}, { unapplied: longAgo, markerRunning: true }))).toEqual([]);
    expect(kinds(facts({ state: "out-of-sync", reason: "seq gap" }, { unapplied: longAgo }))).toEqual(["target-out-of-sync"]);
    // What it applied recently, by its applied time.
    expect(kinds(facts({ appliedAt: new Date(NOW.getTime() - 60_000).toISOString() }, { unapplied: longAgo }))).toEqual([]);
  });

  it("is judged by what the target applied, not by a status refreshed by refusals or rejections", () => {
    // Refusing (or rejecting) every message for an hour writes the status each time; it applied nothing since T0.
    const refusing = { appliedAt: new Date(T0).toISOString(), updatedAt: new Date(NOW.getTime() - 1000).toISOString() };
    const [problem] = findProblems(facts(refusing, { unapplied: longAgo }));
    expect(problem?.kind).toBe("target-stalled");
    expect(problem?.message).toContain(`and applied nothing since ${new Date(T0).toISOString()}:`);
    // A target that never applied anything, however fresh its status.
    const never = findProblems(facts({ lastSeq: 0, updatedAt: new Date(NOW.getTime() - 1000).toISOString() }, { unapplied: { seq: 10, at: T0 + 1000 } }));
    expect(never.map((p) => p.kind)).toEqual(["target-stalled"]);
    expect(never[0]?.message).toContain("and applied nothing yet:");
  });
});
