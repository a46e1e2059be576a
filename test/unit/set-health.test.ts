// What `tidemark status` names as wrong with a set, check by check.

import { describe, expect, it } from "vitest";
import { caughtUp, findProblems, REJECTED_RECENT_MS, type SetFacts } from "../../agent/set-health.ts";
import type { SetCounters } from "../../agent/journal.ts";
import { initialStatus, type SetStatus } from "../../contract/layout.ts";
import { generationDigest } from "../../contract/forgotten-generations.ts";

const NOW = new Date("2026-01-02T00:00:00Z");
const COUNTERS: SetCounters = { nextSeq: 11, sentSeq: 10, backlogRecords: 0, backlogBytes: 0, messagesSent: 3, bytesSent: 100, lastSendError: null, overflowed: false, watcherProblem: null };

function facts(target: Partial<SetStatus> | { error: string }, counters: Partial<SetCounters> = {}, generation = { id: "g1", sinceSeq: 0 }): SetFacts {
  return {
    set: "s",
    counters: { ...COUNTERS, ...counters },
    generation,
    target: "error" in target ? { error: target.error } : { status: { ...initialStatus("s"), lastSeq: 10, generation: "g1", ...target } },
    now: NOW,
  };
}

const kinds = (f: SetFacts) => findProblems(f).map((p) => p.kind);

describe("set health", () => {
  it("is in sync only when nothing is wrong and the target applied everything of this generation", () => {
    expect(kinds(facts({}))).toEqual([]);
    expect(caughtUp(facts({}))).toBe(true);
    // Sent but not applied yet, or not sent yet: healthy, catching up.
    expect(caughtUp(facts({ lastSeq: 8 }))).toBe(false);
    expect(caughtUp(facts({}, { nextSeq: 13, backlogRecords: 2 }))).toBe(false);
    expect(kinds(facts({ lastSeq: 8 }))).toEqual([]);
  });

  it("does not call a set the agent never ran for in sync: no journal, and a target that never applied anything of it", () => {
    const never: SetFacts = { ...facts({ lastSeq: 0, generation: undefined }, { nextSeq: 1, sentSeq: 0 }), generation: undefined, journalMissing: "/var/lib/tidemark/journal.db" };
    expect(caughtUp(never)).toBe(true);
    expect(findProblems(never)).toEqual([{ kind: "no-journal", message: expect.stringContaining("no journal at /var/lib/tidemark/journal.db: the agent has not run") as string }]);
    // A target that holds the set: the lost journal is the continuity check's to name.
    expect(kinds({ ...facts({}, { nextSeq: 1, sentSeq: 0 }), generation: undefined, journalMissing: "/j" })).toEqual(["other-generation"]);
    // A journal, and nothing sent yet: nothing is wrong.
    expect(kinds({ ...facts({ lastSeq: 0, generation: undefined }, { nextSeq: 1, sentSeq: 0 }), generation: undefined })).toEqual([]);
  });

  it("names a stopped agent, with since when if known, and nothing while one runs or was not looked at", () => {
    expect(kinds({ ...facts({}), agent: { running: true } })).toEqual([]);
    expect(kinds(facts({}))).toEqual([]);
    expect(findProblems({ ...facts({}), agent: { running: false, stoppedAt: "2026-01-01T23:00:00.000Z" } })).toEqual([
      { kind: "agent-stopped", message: "no agent is running: changes on the source since 2026-01-01T23:00:00.000Z (when the agent stopped) are not being replicated; start it with `tidemark run` or the service" },
    ]);
    expect(findProblems({ ...facts({}), agent: { running: false } })[0]?.message).toContain("changes on the source since the agent stopped are not being replicated");
  });

  it("names a newest snapshot that failed its digest or its content check, and not one that passed", () => {
    const last = { id: "snap-1", takenAt: "2026-01-01T00:00:00Z" };
    expect(kinds(facts({ lastSnapshot: { ...last, digest: "matched", verification: "verified" } }))).toEqual([]);
    expect(kinds(facts({ lastSnapshot: { ...last, digest: "unverified", verification: "pending" } }))).toEqual([]);
    expect(kinds(facts({ lastSnapshot: { ...last, digest: "mismatch", verification: "verified" } }))).toEqual(["snapshot-check-failed"]);
    expect(findProblems(facts({ lastSnapshot: { ...last, digest: "matched", verification: "failed" } }))[0]?.message).toMatch(/snap-1 .* content it names is missing or altered/);
    expect(caughtUp(facts({ lastSnapshot: { ...last, digest: "mismatch", verification: "failed" } }))).toBe(true);
    // Files torn as read (the marker's barrier saw them change): its task failed, and status says so.
    // Its own kind, saying what to do: a script watching for damaged recovery points is not woken by it.
    expect(findProblems(facts({ lastSnapshot: { ...last, digest: "matched", verification: "verified", changingWhileRead: 2 } }))).toEqual([
      {
        kind: "snapshot-torn",
        message:
          "the newest snapshot snap-1 (2026-01-01T00:00:00Z) holds 2 file(s) that kept changing while its marker read them (held as read, possibly torn; everything else is as at the marker): quiesce the application (`tidemark task --quiesce`) or exclude files that are always written (the set's `exclude`); this clears at the next snapshot without such files; `tidemark snapshots s --json` names them",
      },
    ]);
    expect(kinds(facts({ lastSnapshot: { ...last, digest: "mismatch", verification: "verified", changingWhileRead: 2 } }))).toEqual(["snapshot-check-failed", "snapshot-torn"]);
    // Lacking entries the source holds and the agent does not replicate: its task failed, and status says so.
    expect(findProblems(facts({ lastSnapshot: { ...last, digest: "matched", verification: "verified", notReplicated: 4 } }))).toEqual([
      { kind: "snapshot-incomplete", message: expect.stringMatching(/^the newest snapshot snap-1 \(2026-01-01T00:00:00Z\) lacks 4 entries the source held at its marker that the agent does not replicate .*`exclude`/) as string },
    ]);
  });

  it("names two writers on one journal once, with what to do, instead of a bare out-of-sync target", () => {
    const twoWriters = { at: "2026-01-01T00:00:00.000Z", messageId: "m9", seq: 7, generation: "g1", applied: "put a (1 bytes, sha256 ca978112ca1b, mode 644, mtime 1)", received: "put b (1 bytes, sha256 3e23e8160039, mode 644, mtime 1)" };
    const found = findProblems(facts({ state: "out-of-sync", reason: "two writers on one journal: seq 7 differs from what was applied", twoWriters }));
    expect(found.map((p) => p.kind)).toEqual(["two-writers"]);
    expect(found[0]?.message).toBe(
      "two writers on one journal: seq 7 of message m9 (2026-01-01T00:00:00.000Z) differs from what the target applied (applied: put a (1 bytes, sha256 ca978112ca1b, mode 644, mtime 1); received: put b (1 bytes, sha256 3e23e8160039, mode 644, mtime 1)): another host with a copy of this host's state folder and key sends the set's changes; the target applies nothing of the set until an operator acts: stop `tidemark run` on the copy, then run `tidemark adopt s` on the host that should own the set and restart its agent (no other host has a copy of this state folder? run `tidemark adopt s` here: its mirror repairs the set)",
    );
  });

  it("names each problem", () => {
    expect(kinds(facts({ error: "connect ECONNREFUSED" }))).toEqual(["target-unreachable"]);
    expect(kinds(facts({ state: "out-of-sync", reason: "seq gap: expected 5, got 9" }))).toEqual(["target-out-of-sync"]);
    expect(findProblems(facts({ state: "out-of-sync", reason: "seq gap: expected 5, got 9" }))[0]?.message).toMatch(/seq gap: expected 5, got 9/);
    expect(kinds(facts({ lastSeq: 57_689 }))).toEqual(["target-ahead"]);
    expect(kinds(facts({ generation: "g0", lastSeq: 57_689 }))).toEqual(["other-generation"]);
    expect(kinds(facts({ generation: "g0", lastSeq: 57_689 }, {}, { id: "g1", sinceSeq: 4 }))).toEqual(["generation-change"]);
    const left = { generation: "g2", generations: [{ id: "g1", since: "", seq: 1, reason: "" }, { id: "g2", since: "", seq: 1, reason: "" }] };
    expect(kinds(facts(left))).toEqual(["generation-left"]);
    // Left so long ago that the target keeps only its digest: left all the same.
    expect(kinds(facts({ generation: "g2", generations: [{ id: "g2", since: "", seq: 1, reason: "" }], forgottenGenerations: [generationDigest("g1")] }))).toEqual(["generation-left"]);
    expect(kinds(facts({}, { overflowed: true }))).toEqual(["journal-full"]);
    expect(kinds(facts({}, { watcherProblem: "the watcher ran out of inotify watches" }))).toEqual(["watcher-failed"]);
    expect(kinds(facts({}, { lastSendError: "AccessDenied" }))).toEqual(["send-error"]);
    // Everything at once, in a stable order.
    expect(kinds(facts({ state: "out-of-sync", lastSeq: 99 }, { overflowed: true, lastSendError: "x" }))).toEqual(["target-out-of-sync", "target-ahead", "journal-full", "send-error"]);
  });

  it("names a set another host owns on the target, and no resync it will never reach", () => {
    const notOwner = { ownerKeyId: "aaaaaaaaaaaaaaaa", ownerSince: "2026-01-01T00:00:00Z", hostKeyId: "bbbbbbbbbbbbbbbb" };
    const rogue: SetFacts = { ...facts({ generation: "g0", lastSeq: 57_689 }, {}, { id: "g1", sinceSeq: 4 }), notOwner };
    expect(kinds(rogue)).toEqual(["not-owner"]);
    expect(findProblems(rogue)[0]?.message).toMatch(/key bbbbbbbbbbbbbbbb\) does not own the set on the target: key aaaaaaaaaaaaaaaa does since .* `tidemark adopt s`/);
    expect(kinds(facts({}))).not.toContain("not-owner");
  });

  it("counts a rejected message for a day", () => {
    const at = (ms: number) => ({ lastRejected: { at: new Date(NOW.getTime() - ms).toISOString(), messageId: "m1", error: "invalid message" } });
    expect(kinds(facts(at(60_000)))).toEqual(["rejected-message"]);
    expect(findProblems(facts(at(60_000)))[0]?.message).toMatch(/last rejected message m1 at .*: invalid message/);
    expect(kinds(facts(at(REJECTED_RECENT_MS + 1)))).toEqual([]);
  });

  it("compares a target that has seen no generation yet by seq", () => {
    expect(kinds(facts({ generation: undefined }))).toEqual([]);
    expect(caughtUp(facts({ generation: undefined }))).toBe(true);
    expect(kinds(facts({ generation: undefined, lastSeq: 500 }))).toEqual(["target-ahead"]);
  });
});
