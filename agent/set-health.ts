// What `tidemark status` says is wrong with a set: each check looks at one
// source of trouble (the journal, the watcher, the sender, the target's
// status) and names what it finds. A set is in sync only when no check finds
// anything and the target applied everything this journal's generation holds.

import type { SetStatus } from "../contract/layout.ts";
import { awaitingGeneration } from "./continuity.ts";
import type { JournalGeneration, SetCounters } from "./journal.ts";

/** A path the set does not replicate, with why; `since` when the target refused its latest change (it keeps the last good version). */
export interface NotReplicated {
  readonly path: string;
  readonly reason: string;
  readonly since?: string;
}

/** One thing wrong with a set; `kind` is stable for scripts, `message` says what and why. */
export interface Problem {
  readonly kind: string;
  readonly message: string;
}

/** What the checks look at, for one set. */
export interface SetFacts {
  readonly set: string;
  readonly counters: SetCounters;
  /** The journal's generation of the set; undefined when the journal never sent anything of it. */
  readonly generation: JournalGeneration | undefined;
  /** Paths not replicated: their latest change refused for good by the target, or names the target cannot carry. */
  readonly skipped?: readonly NotReplicated[];
  /** What keeps the agent from journaling (a full disk under its state folder), from the problem file; null when nothing does. */
  readonly journalProblem?: { readonly since: string; readonly problem: string } | null;
  /** The set's last recovery drill (`tidemark drill`), when one ran. */
  readonly drill?: { readonly id: string; readonly passed: boolean; readonly finishedAt: string; readonly problemCount: number };
  /** The target's status, or why it could not be read. */
  readonly target: { readonly status: SetStatus } | { readonly error: string };
  readonly now: Date;
  /** Since when the agent's start scan of the set runs (scan-progress.ts): the journal does not hold all the source holds yet. */
  readonly scanningSince?: string;
}

export type ProblemCheck = (facts: SetFacts) => Problem[];

/** A rejected message counts against the set this long: its records are lost unless a resync followed. */
export const REJECTED_RECENT_MS = 24 * 3_600_000;

const targetStatus = (facts: SetFacts): SetStatus | undefined => ("status" in facts.target ? facts.target.status : undefined);

/** True when the target's seqs and this journal's count in the same chain. */
export function sameGeneration(facts: SetFacts): boolean {
  const status = targetStatus(facts);
  if (!status) return false;
  // A target that has not seen a generation yet (agents before generations) is compared by seq.
  return status.generation === undefined || status.generation === facts.generation?.id;
}

const unreachable: ProblemCheck = (facts) => ("error" in facts.target ? [{ kind: "target-unreachable", message: `target unreachable: ${facts.target.error}` }] : []);

const outOfSync: ProblemCheck = (facts) => {
  const status = targetStatus(facts);
  if (status?.state !== "out-of-sync") return [];
  return [{ kind: "target-out-of-sync", message: `the target holds the set out of sync: ${status.reason ?? "no reason recorded"}` }];
};

const continuity: ProblemCheck = (facts) => {
  const status = targetStatus(facts);
  if (!status) return [];
  const lastSeq = facts.counters.nextSeq - 1;
  if (sameGeneration(facts)) {
    if (status.lastSeq <= lastSeq) return [];
    return [
      {
        kind: "target-ahead",
        message: `the target applied seq ${status.lastSeq}, beyond this journal's last seq ${lastSeq}: the journal was lost or restored from an older copy; the agent begins a new generation when it starts`,
      },
    ];
  }
  const generation = facts.generation;
  if (generation && awaitingGeneration(generation, status)) {
    return [
      {
        kind: "generation-change",
        message: `this journal began generation ${generation.id} at seq ${generation.sinceSeq}; the target is still on generation ${status.generation ?? "(none)"} at seq ${status.lastSeq} until it reaches the resync`,
      },
    ];
  }
  if (generation && status.generations?.some((g) => g.id === generation.id)) {
    return [{ kind: "generation-left", message: `the target left this journal's generation ${generation.id} for ${status.generation ?? "(none)"}: this journal is an older copy; its messages are refused` }];
  }
  return [
    {
      kind: "other-generation",
      message: `the target is on generation ${status.generation ?? "(none)"} at seq ${status.lastSeq}, this journal is ${generation ? `generation ${generation.id}` : "new"} at seq ${lastSeq}: the journal was lost or replaced; the agent begins a new generation when it starts`,
    },
  ];
};

const rejected: ProblemCheck = (facts) => {
  const last = targetStatus(facts)?.lastRejected;
  if (!last || facts.now.getTime() - Date.parse(last.at) > REJECTED_RECENT_MS) return [];
  return [{ kind: "rejected-message", message: `last rejected message ${last.messageId} at ${last.at}: ${last.error}` }];
};

/** Messages refused as not the set's owner's: another host (or a forger) is sending under this set's name. */
const refusedSenders: ProblemCheck = (facts) => {
  const refused = targetStatus(facts)?.refused;
  if (!refused || facts.now.getTime() - Date.parse(refused.last.at) > REJECTED_RECENT_MS) return [];
  const last = refused.last;
  const who = [last.sender ? `sender ${last.sender}` : "", last.keyId ? `key ${last.keyId}` : ""].filter(Boolean).join(", ");
  return [
    {
      kind: "refused-sender",
      message: `refused ${refused.count} message(s) not from the set's owner; last ${last.messageId} at ${last.at}${who ? ` (${who})` : ""}: ${last.reason}`,
    },
  ];
};

const journalFull: ProblemCheck = (facts) =>
  facts.counters.overflowed
    ? [{ kind: "journal-full", message: "the journal reached its limit: changes since then are not journaled until the backlog drains and a catch-up scan runs" }]
    : [];

const watcher: ProblemCheck = (facts) => (facts.counters.watcherProblem ? [{ kind: "watcher-failed", message: facts.counters.watcherProblem }] : []);

const sending: ProblemCheck = (facts) => (facts.counters.lastSendError ? [{ kind: "send-error", message: `sending: ${facts.counters.lastSendError}` }] : []);

const skippedPaths: ProblemCheck = (facts) =>
  (facts.skipped ?? []).map((s) => ({
    kind: "skipped-path",
    message: s.since !== undefined ? `not replicated since ${s.since}: ${s.path}: ${s.reason}` : `not replicated: ${s.path}: ${s.reason} (rename it to replicate it)`,
  }));

const journalProblem: ProblemCheck = (facts) =>
  facts.journalProblem ? [{ kind: "journal-problem", message: `since ${facts.journalProblem.since}: ${facts.journalProblem.problem}` }] : [];

/** The newest snapshot failed its digest or its content check: that recovery point is not what the source held. */
const snapshotCheck: ProblemCheck = (facts) => {
  const last = targetStatus(facts)?.lastSnapshot;
  if (!last || (last.digest !== "mismatch" && last.verification !== "failed")) return [];
  const what = [last.digest === "mismatch" ? "its digest does not match what the source held" : "", last.verification === "failed" ? "content it names is missing or altered" : ""]
    .filter(Boolean)
    .join(", and ");
  return [{ kind: "snapshot-check-failed", message: `the newest snapshot ${last.id} (${last.takenAt}) failed its checks: ${what}; see \`tidemark snapshots ${facts.set} --json\`` }];
};

const drillFailed: ProblemCheck = (facts) =>
  facts.drill && !facts.drill.passed
    ? [{ kind: "drill-failed", message: `the last recovery drill ${facts.drill.id} (${facts.drill.finishedAt}) failed with ${facts.drill.problemCount} bad paths: see drills/${facts.set}/${facts.drill.id}.json` }]
    : [];

/** Every check `tidemark status` runs, in the order its findings are listed. */
export const PROBLEM_CHECKS: readonly ProblemCheck[] = [unreachable, outOfSync, continuity, rejected, refusedSenders, journalFull, journalProblem, watcher, sending, skippedPaths, snapshotCheck, drillFailed];

export function findProblems(facts: SetFacts, checks: readonly ProblemCheck[] = PROBLEM_CHECKS): Problem[] {
  return checks.flatMap((check) => check(facts));
}

/** The target applied everything this journal's generation holds, and nothing waits to be sent. */
export function caughtUp(facts: SetFacts): boolean {
  const status = targetStatus(facts);
  return status !== undefined && facts.scanningSince === undefined && sameGeneration(facts) && facts.counters.backlogRecords === 0 && status.lastSeq === facts.counters.nextSeq - 1;
}
