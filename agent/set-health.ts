// What `tidemark status` says is wrong with a set: each check looks at one
// source of trouble (the journal, the watcher, the sender, the target's
// status) and names what it finds. A set is in sync only when no check finds
// anything and the target applied everything this journal's generation holds.

import type { SetStatus } from "../contract/layout.ts";
import type { AgentPresence } from "./agent-presence.ts";
import { wasForgotten } from "../contract/forgotten-generations.ts";
import { awaitingGeneration } from "./continuity.ts";
import type { HeldReport, ScanFailureReport } from "./held-files.ts";
import { skippedRemedy } from "./skipped-names.ts";
import { wholePackRefusal } from "./applier-accepts.ts";
import type { JournalGeneration, SetCounters } from "./journal.ts";
import { describePlace, type CopiedKey } from "./owner-place.ts";
import type { PendingRecovery } from "./pending-recoveries.ts";
import { describeHold, holdRemedy, type RootHold } from "./set-roots.ts";

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
  /** The oldest message sent that the target has not applied all of: its last seq and when the queue took it (ms). */
  readonly unapplied?: { readonly seq: number; readonly at: number };
  /** A marker's action of the set is running: it may hold the set's stream on purpose. */
  readonly markerRunning?: boolean;
  /** A scan of the whole set that has not finished (running, or left by an agent that stopped): what it has not reached is not journaled. */
  readonly scanning?: { readonly since: string; readonly agentRunning: boolean } | null;
  /** The set's last scan that failed, not yet followed by one that succeeded: what it had not reached is not journaled. */
  readonly scanFailed?: ScanFailureReport | null;
  /** Where the journal would be, when there is none (the agent never ran with this state folder). */
  readonly journalMissing?: string;
  /** The journal (this path) exists but no agent ever ran the set with it: the set was added to the config of a running agent, or a command that would have started one failed. */
  readonly setNotJournaled?: string;
  /** Busy files whose newest version the agent holds back (held-files.ts): the target lacks it, though no record waits. */
  readonly held?: readonly HeldReport[];
  /** A recovery begun and not finished (pending-recoveries.ts): its verification has not made the target equal the source yet. */
  readonly recovering?: PendingRecovery | null;
  /** What keeps the agent from journaling (a full disk under its state folder), from the problem file; null when nothing does. */
  readonly journalProblem?: { readonly since: string; readonly problem: string } | null;
  /** The set's last recovery drill (`tidemark drill`), when one ran. */
  readonly drill?: { readonly id: string; readonly passed: boolean; readonly finishedAt: string; readonly problemCount: number; readonly check?: DrillCheck };
  /** The set's drill reports no agent took in time, kept in the state folder until its next agent journals them (drill-kept.ts). */
  readonly drillKept?: readonly { readonly id: string; readonly passed: boolean; readonly finishedAt: string; readonly file: string }[];
  /** Why the state folder's agent cannot take kept drill reports away (drill-reports/ owned by another user), when it cannot. */
  readonly drillKeptUnclaimable?: string;
  /**
   * The target's owner of the set is another key than this host's: the target refuses this host's messages.
   * `hostKeyCopied`: this host's key was made because its state folder was found to be a copy (owner-place.ts).
   */
  readonly notOwner?: { readonly ownerKeyId: string; readonly ownerSince: string; readonly hostKeyId: string; readonly hostKeyCopied?: CopiedKey };
  /** Why the target's owner record of the set cannot be read (the applier refuses the set's messages meanwhile). */
  readonly ownerUnreadable?: string;
  /** The set is held: its root went missing, was swapped for another folder, or is empty (set-roots.ts). */
  readonly rootHold?: RootHold | undefined;
  /** Whether an agent runs on the state folder (agent-presence.ts); undefined when not looked at. */
  readonly agent?: AgentPresence;
  /** The target's status, or why it could not be read. */
  readonly target: { readonly status: SetStatus } | { readonly error: string };
  readonly now: Date;
}

export type ProblemCheck = (facts: SetFacts) => Problem[];

/** A rejected message counts against the set this long: its records are lost unless a resync followed. */
export const REJECTED_RECENT_MS = 24 * 3_600_000;

/** A target that has not applied a message sent this long ago, and has applied nothing for this long, is stalled (no message takes it). */
export const STALLED_MS = 30 * 60_000;

const targetStatus = (facts: SetFacts): SetStatus | undefined => ("status" in facts.target ? facts.target.status : undefined);

/** True when the target's seqs and this journal's count in the same chain. */
export function sameGeneration(facts: SetFacts): boolean {
  const status = targetStatus(facts);
  if (!status) return false;
  // A target that has not seen a generation yet (agents before generations) is compared by seq.
  return status.generation === undefined || status.generation === facts.generation?.id;
}

/** A held set: the agent journals nothing of it, so the target keeps its last copy, whatever else looks in sync. */
const rootHeld: ProblemCheck = (facts) => {
  const hold = facts.rootHold;
  if (!hold) return [];
  return [
    {
      kind: hold.state,
      message: `held since ${hold.since}: ${describeHold(hold)}; the agent journals nothing of the set (no deletes, nothing from the folder there now, no markers) and the target keeps its last copy; ${holdRemedy(hold)}`,
    },
  ];
};

const unreachable: ProblemCheck = (facts) =>
  "error" in facts.target
    ? [{ kind: "target-unreachable", message: `target unreachable: ${facts.target.error} (is the endpoint up? \`tidemark doctor\` checks the endpoint, proxy and credentials)` }]
    : [];

/** Another host owns the set on the target: every message of this one is refused, whatever its journal says. */
const notOwner: ProblemCheck = (facts) => {
  if (!facts.notOwner) return [];
  const { hostKeyId, ownerKeyId, ownerSince, hostKeyCopied: copied } = facts.notOwner;
  // A copy of another host's state folder (a cloned VM, a copied or restored folder): the owner is likely that host.
  const why = copied
    ? `; this host's key was made at ${copied.at} because its state folder was found to be a copy (its key ${copied.keyId} was made for ${describePlace(copied.from)}; set aside as ${copied.setAside}), so the target's owner record still names the original host's key`
    : "";
  return [
    {
      kind: "not-owner",
      message: `this host (key ${hostKeyId}) does not own the set on the target: key ${ownerKeyId} does since ${ownerSince}, and the target refuses this host's messages${why}; the agent holds the set's sends (its journal keeps recording) until \`tidemark adopt ${facts.set}\` is run here (operator credentials), if this host should replicate it now${copied ? " in place of the original" : ""}`,
    },
  ];
};

/** An owner record that cannot be read: the applier refuses every message of the set; the agent does not hold on it. */
const ownerUnreadable: ProblemCheck = (facts) =>
  facts.ownerUnreadable !== undefined
    ? [
        {
          kind: "owner-unreadable",
          message: `the target's owner record of the set cannot be read (${facts.ownerUnreadable}): the applier refuses the set's messages and the agent keeps sending them; an operator registers the owner again with \`tidemark adopt ${facts.set}\` on the host that should replicate it`,
        },
      ]
    : [];

/**
 * No journal, and a target that never applied anything of the set: nothing was ever replicated, which is not
 * "in sync". (With a target that holds the set, the continuity check names the lost journal.)
 */
const noJournal: ProblemCheck = (facts) => {
  const status = targetStatus(facts);
  if ((facts.journalMissing ?? facts.setNotJournaled) === undefined || !status || status.lastSeq > 0 || status.generation !== undefined) return [];
  if (facts.journalMissing === undefined) {
    return [
      {
        kind: "no-journal",
        message: `the journal at ${facts.setNotJournaled} holds nothing of the set: no agent has run it with this state folder yet (a set added to the config needs the agent restarted: \`tidemark run\`, or \`systemctl restart tidemark\`); nothing of the set was replicated`,
      },
    ];
  }
  return [
    {
      kind: "no-journal",
      message: `no journal at ${facts.journalMissing}: the agent has not run with this state folder yet (start it: \`tidemark run\`), or this config names another state folder than the agent's; nothing of the set was replicated`,
    },
  ];
};

/** No agent runs: nothing journals or sends the source's changes, whatever the target and the journal say. */
const agentStopped: ProblemCheck = (facts) => {
  if (facts.agent === undefined || facts.agent.running) return [];
  const since = facts.agent.stoppedAt !== undefined ? `since ${facts.agent.stoppedAt} (when the agent stopped)` : "since the agent stopped";
  return [
    {
      kind: "agent-stopped",
      message: `no agent is running: changes on the source ${since} are not being replicated; start it with \`tidemark run\` or the service`,
    },
  ];
};

/** An agent runs but takes no request: stopped or hung, it replicates nothing, whatever the journal says. */
const agentNotAnswering: ProblemCheck = (facts) =>
  facts.agent?.running === true && facts.agent.notAnswering !== undefined ? [{ kind: "agent-not-answering", message: facts.agent.notAnswering }] : [];

const outOfSync: ProblemCheck = (facts) => {
  const status = targetStatus(facts);
  // Named by twoWriters, with what to do.
  if (status?.state !== "out-of-sync" || status.twoWriters) return [];
  return [{ kind: "target-out-of-sync", message: `the target holds the set out of sync: ${status.reason ?? "no reason recorded"}` }];
};

/** Another host sends this set's journal (a copy of this host, its key included): the target applies nothing of the set until an operator acts. */
const twoWriters: ProblemCheck = (facts) => {
  const found = targetStatus(facts)?.twoWriters;
  if (!found) return [];
  return [
    {
      kind: "two-writers",
      message: `two writers on one journal: seq ${found.seq} of message ${found.messageId} (${found.at}) differs from what the target applied (applied: ${found.applied}; received: ${found.received}): another host with a copy of this host's state folder and key sends the set's changes; the target applies nothing of the set until an operator acts: stop \`tidemark run\` on the copy, then run \`tidemark adopt ${facts.set}\` on the host that should own the set and restart its agent (no other host has a copy of this state folder? run \`tidemark adopt ${facts.set}\` here: its mirror repairs the set)`,
    },
  ];
};

const continuity: ProblemCheck = (facts) => {
  const status = targetStatus(facts);
  // A host that does not own the set never reaches its resync: not-owner says what to do.
  if (!status || facts.notOwner) return [];
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
  if (generation && (status.generations?.some((g) => g.id === generation.id) || wasForgotten(status, generation.id))) {
    return [{ kind: "generation-left", message: `the target left this journal's generation ${generation.id} for ${status.generation ?? "(none)"}: this journal is an older copy; its messages are refused` }];
  }
  return [
    {
      kind: "other-generation",
      message: `the target is on generation ${status.generation ?? "(none)"} at seq ${status.lastSeq}, this journal is ${generation ? `generation ${generation.id}` : "new"} at seq ${lastSeq}: the journal was lost or replaced; the agent begins a new generation when it starts`,
    },
  ];
};

/**
 * When the target last applied anything: its appliedAt, which refusals and rejections (that also refresh updatedAt)
 * leave alone; never, for a target that records it and applied nothing yet; updatedAt from an applier that does not
 * record it.
 */
function lastApplied(status: SetStatus): string | undefined {
  if (status.appliedAt !== undefined) return status.appliedAt;
  return status.lastSeq === 0 ? undefined : status.updatedAt;
}

/**
 * A message sent long ago is not applied, and the target has applied nothing since long before now: the applier is
 * failing on it (retried until the dead-letter queue takes it) or not running, or refuses everything. "Catching up"
 * would never end.
 */
const stalled: ProblemCheck = (facts) => {
  const status = targetStatus(facts);
  const sent = facts.unapplied;
  if (!status || !sent || status.state === "out-of-sync" || !sameGeneration(facts) || facts.markerRunning === true) return [];
  const now = facts.now.getTime();
  const applied = lastApplied(status);
  if (now - sent.at < STALLED_MS || (applied !== undefined && now - Date.parse(applied) < STALLED_MS)) return [];
  return [
    {
      kind: "target-stalled",
      message: `the target has not applied seq ${sent.seq}, sent at ${new Date(sent.at).toISOString()}, and applied nothing ${applied === undefined ? "yet" : `since ${applied}`}: the applier is failing on it or not running (see its logs, and the dead-letter queue)`,
    },
  ];
};

const rejected: ProblemCheck = (facts) => {
  const status = targetStatus(facts);
  const last = status?.lastRejected;
  if (!last || facts.now.getTime() - Date.parse(last.at) > REJECTED_RECENT_MS) return [];
  // A resync after the rejected message's records, applied since: the mirror after it holds whatever they would have
  // written. A rejection without seq records (a marker, an unparsable or stale message) is superseded by nothing.
  const resynced = status?.resynced;
  if (last.seq !== undefined && resynced !== undefined && resynced.generation === last.generation && resynced.seq > last.seq) return [];
  const wholePack = status && wholePackRefusal(status, facts.set, facts.generation && { sentSeq: facts.counters.sentSeq, generation: facts.generation.id });
  if (wholePack === "superseded") return [];
  return [{ kind: "rejected-message", message: wholePack ?? `last rejected message ${last.messageId} at ${last.at}: ${last.error}` }];
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
      // A problem (exit 1) for who else speaks for the set, not for anything of the owner's: the message says so.
      message: `refused ${refused.count} message(s) not from the set's owner; last ${last.messageId} at ${last.at}${who ? ` (${who})` : ""}: ${last.reason}; nothing of them was applied and none of the owner's messages was lost: a sender other than the owner is sending to the set's message group`,
    },
  ];
};

const journalFull: ProblemCheck = (facts) =>
  facts.counters.overflowed
    ? [{ kind: "journal-full", message: "the journal reached its limit: changes since then are not journaled until the backlog drains and a catch-up scan runs" }]
    : [];

/** A scan that threw: the changes it had not reached are in no journal record, and nothing else would name them. */
const scanFailed: ProblemCheck = (facts) => {
  const failed = facts.scanFailed;
  if (!failed) return [];
  const what = failed.folder === "" ? "the scan of the whole set" : `the scan of folder ${failed.folder} (new in the set)`;
  const retry = failed.agentRunning
    ? "the agent scans the whole set again soon (within seconds after a failed capture or background scan, waiting twice as long, up to 5 minutes, while that keeps failing; at the latest at its next rescan, rescanSeconds in the config) and when it restarts; the agent's log names the cause"
    : "the agent that ran it is not running: its next start scans the set again";
  return [{ kind: "scan-failed", message: `${what} that began at ${failed.since} failed at ${failed.failedAt}: ${failed.error}; what it had not reached is not journaled: ${retry}` }];
};

const watcher: ProblemCheck = (facts) => (facts.counters.watcherProblem ? [{ kind: "watcher-failed", message: facts.counters.watcherProblem }] : []);

const sending: ProblemCheck = (facts) => (facts.counters.lastSendError ? [{ kind: "send-error", message: `sending: ${facts.counters.lastSendError}` }] : []);

const skippedPaths: ProblemCheck = (facts) =>
  (facts.skipped ?? []).map((s) => ({
    kind: "skipped-path",
    message: s.since !== undefined ? `not replicated since ${s.since}: ${s.path}: ${s.reason}` : `not replicated: ${s.path}: ${s.reason} (${skippedRemedy(s.reason)})`,
  }));

const journalProblem: ProblemCheck = (facts) =>
  facts.journalProblem ? [{ kind: "journal-problem", message: `since ${facts.journalProblem.since}: ${facts.journalProblem.problem}` }] : [];

/**
 * The newest snapshot failed its digest or its content check (that recovery point is not what the source held), or
 * holds files torn as read (whole, but not one application-consistent moment): each its own kind, so a script
 * watching for damaged recovery points is not woken by an unquiesced busy file.
 */
const snapshotCheck: ProblemCheck = (facts) => {
  const last = targetStatus(facts)?.lastSnapshot;
  if (!last) return [];
  const problems: Problem[] = [];
  const what = [last.digest === "mismatch" ? "its digest does not match what the source held" : "", last.verification === "failed" ? "content it names is missing or altered" : ""].filter(Boolean).join(", and ");
  if (what) problems.push({ kind: "snapshot-check-failed", message: `the newest snapshot ${last.id} (${last.takenAt}) failed its checks: ${what}; see \`tidemark snapshots ${facts.set} --json\`` });
  if (last.changingWhileRead !== undefined) {
    problems.push({
      kind: "snapshot-torn",
      message: `the newest snapshot ${last.id} (${last.takenAt}) holds ${last.changingWhileRead} file(s) that kept changing while its marker read them (held as read, possibly torn; everything else is as at the marker): quiesce the application (\`tidemark task --quiesce\`) or exclude files that are always written (the set's \`exclude\`); this clears at the next snapshot without such files; \`tidemark snapshots ${facts.set} --json\` names them`,
    });
  }
  if (last.notReplicated !== undefined) {
    problems.push({
      kind: "snapshot-incomplete",
      message: `the newest snapshot ${last.id} (${last.takenAt}) lacks ${last.notReplicated} entries the source held at its marker that the agent does not replicate (named among this set's problems; restore names them as not restored): rename them or add them to the set's \`exclude\`; this clears at the next snapshot without such entries`,
    });
  }
  return problems;
};

/** History segments the applier could not read when it replayed the folder writes left for later: the live folders may lack what they held. */
const folderWritesLost: ProblemCheck = (facts) => {
  const lost = targetStatus(facts)?.folderWritesLost;
  if (!lost) return [];
  const segments = lost.first === lost.last ? `history segment ${lost.first}` : `${lost.unreadable} history segment(s) between ${lost.first} and ${lost.last}`;
  return [
    {
      kind: "folder-writes-lost",
      message: `${segments} could not be read when the applier replayed the folder changes left for later (${lost.at}: ${lost.error}): folder modes and mtimes they held may be missing from the live mirror; \`tidemark mirror ${facts.set} --mode full\` writes every folder again`,
    },
  ];
};

/** Entries the newest history checkpoint left out as unreadable: a restore of a moment from it cannot bring them back. */
const checkpointUnreadable: ProblemCheck = (facts) => {
  const left = targetStatus(facts)?.checkpointUnreadable;
  if (!left) return [];
  const named = left.entries.map((e) => e.path).join(", ");
  const more = left.count > left.entries.length ? ` and ${left.count - left.entries.length} more` : "";
  return [
    {
      kind: "checkpoint-unreadable",
      message: `the history checkpoint of ${left.at} (segment ${left.segment}) could not read ${left.count} entr${left.count === 1 ? "y" : "ies"} of the live mirror (${named}${more}): a restore --at from it names them as not restorable; \`tidemark mirror ${facts.set} --mode full\` writes them again`,
    },
  ];
};

/** A drill's application check, as its report has it. */
export interface DrillCheck {
  readonly command: string;
  readonly passed: boolean;
  readonly code: number | null;
  readonly timedOut: boolean;
}

/**
 * Why a drill failed, as its report says: its bad paths, its check, or both. A drill that failed only its check has no
 * bad path, and "failed with 0 bad paths" read as if nothing was wrong.
 */
export function drillFailure(drill: { readonly problemCount: number; readonly check?: DrillCheck | undefined }): string {
  const { problemCount, check } = drill;
  const paths = `${problemCount} bad path${problemCount === 1 ? "" : "s"}`;
  if (!check || check.passed) return `with ${paths}`;
  const how = check.timedOut ? "timed out" : check.code === null ? "was killed" : `exited with ${check.code}`;
  const failed = `its check (\`${check.command}\` ${how})`;
  return problemCount > 0 ? `with ${paths}, and ${failed}` : failed;
}

const drillFailed: ProblemCheck = (facts) =>
  facts.drill && !facts.drill.passed
    ? [{ kind: "drill-failed", message: `the last recovery drill ${facts.drill.id} (${facts.drill.finishedAt}) failed ${drillFailure(facts.drill)}: see drills/${facts.set}/${facts.drill.id}.json` }]
    : [];

/** A kept drill report no agent can send (its folder not the agent's), or a FAILED one the target has not seen yet (no DrillFailed alarm). */
const drillReportKept: ProblemCheck = (facts) => {
  const kept = facts.drillKept ?? [];
  if (kept.length > 0 && facts.drillKeptUnclaimable) {
    return [{ kind: "drill-report-kept", message: `${kept.length} drill report(s) kept in the state folder cannot be sent to the target: ${facts.drillKeptUnclaimable}` }];
  }
  return kept
    .filter((k) => !k.passed)
    .map((k) => ({ kind: "drill-report-kept", message: `drill ${k.id} FAILED at ${k.finishedAt} and its report is not sent to the target yet (kept at ${k.file}): the target raises no DrillFailed until the set's next agent on this state folder sends it` }));
};

/** Every check `tidemark status` runs, in the order its findings are listed. */
export const PROBLEM_CHECKS: readonly ProblemCheck[] = [rootHeld, unreachable, agentStopped, agentNotAnswering, notOwner, ownerUnreadable, noJournal, twoWriters, outOfSync, continuity, stalled, rejected, refusedSenders, journalFull, journalProblem, scanFailed, watcher, sending, skippedPaths, snapshotCheck, folderWritesLost, checkpointUnreadable, drillFailed, drillReportKept];

export function findProblems(facts: SetFacts, checks: readonly ProblemCheck[] = PROBLEM_CHECKS): Problem[] {
  return checks.flatMap((check) => check(facts));
}

/** The target applied everything this journal's generation holds, nothing waits to be sent (a kept drill report neither), the agent holds no file back, no scan is unfinished or failed and no recovery is owed. */
export function caughtUp(facts: SetFacts): boolean {
  const status = targetStatus(facts);
  return (
    status !== undefined &&
    sameGeneration(facts) &&
    facts.counters.backlogRecords === 0 &&
    status.lastSeq === facts.counters.nextSeq - 1 &&
    (facts.held ?? []).length === 0 &&
    !facts.scanning &&
    !facts.scanFailed &&
    !facts.recovering &&
    !facts.rootHold &&
    (facts.drillKept ?? []).length === 0
  );
}
