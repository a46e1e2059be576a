import { existsSync } from "node:fs";
import { join } from "node:path";
import { latestDrillReport, makeS3Client, OwnerRecordError, readOwner, readSetStatus, S3Store } from "../../lambdas/target/index.ts";
import type { SetStatus } from "../../contract/layout.ts";
import { clientOptionsOf } from "../aws-options.ts";
import { configPath, loadConfig } from "../config.ts";
import { Journal, type JournalGeneration, type SetCounters } from "../journal.ts";
import { isJournalBusy, journalBusyProblem } from "../journal-busy.ts";
import { caughtUp, drillFailure, findProblems, STALLED_MS, type DrillCheck, type NotReplicated, type Problem, type SetFacts } from "../set-health.ts";
import { markerRunning } from "../task-results.ts";
import { escapeControl, formatBytes, table } from "../format.ts";
import { skippedNow } from "../skipped-names.ts";
import { heldNow, scanFailureNow, scanNow, type HeldReport, type ScanFailureReport } from "../held-files.ts";
import { readProblem, type AgentProblem } from "../problem-file.ts";
import { spaceBallastNote } from "../journal-health.ts";
import { readOwnerKey } from "../owner-key.ts";
import { copiedKeyOf, readOwnerPlace, type CopiedKey } from "../owner-place.ts";
import { JournalCorruptError, JournalUnreadableError } from "../journal-faults.ts";
import { corruptMark, journalsSetAside, setAsideLine, type SetAsideJournal } from "../journal-aside.ts";
import { agentPresence } from "../agent-presence.ts";
import type { PendingRecovery } from "../pending-recoveries.ts";
import type { RootHold } from "../set-roots.ts";
import { uploadLine, uploadsNow, type UploadReport } from "../staged-uploads.ts";
import { keptDrillReports, keptReportsUnclaimable } from "../drill-kept.ts";
import { stringOption, type Command } from "./command.ts";
import { TARGET_READ_MINIMUM_TRANSFER } from "./target-store.ts";

export interface SetReport {
  set: string;
  backlog: { records: number; bytes: number };
  sent: { messages: number; bytes: number; lastSeq: number };
  lastSendError: string | null;
  /** The backlog reached the journal limit: new changes wait for a catch-up scan once it drains. */
  journalFull: boolean;
  /** The watcher failed (inotify watches exhausted): the agent scans on a timer instead. */
  watcherProblem: string | null;
  /** This journal's generation of the set (absent before it sent anything). */
  generation: string | null;
  /**
   * Paths not replicated, with why: the target refused their latest change (it keeps their last good version;
   * `since` says when), or the target cannot carry their names (a newline in a name, ...).
   */
  skipped: NotReplicated[];
  /** Busy large files whose newest version the agent holds back (paced): the set is not in sync while any is. */
  held: HeldReport[];
  /** Large payloads (over 32 MiB) the running agent is staging, with the bytes stored so far: the records after one are sent once it is staged. */
  uploading: UploadReport[];
  /** Since when the set's next message waits for the bandwidth budget (what a large upload before it cost), while it does. */
  waitingForBandwidth?: { since: string };
  /** A scan of the whole set that has not finished (what it has not reached is not journaled yet), or null. */
  scanning: { since: string; agentRunning: boolean } | null;
  /** A recovery begun and not finished (its verification has not made the target equal the source yet; the agent's next start runs it again), or null. */
  recovering: PendingRecovery | null;
  /** The last scan that failed (threw), until a later one succeeds: what it had not reached is not journaled (a `scan-failed` problem). */
  scanFailed: ScanFailureReport | null;
  /**
   * The set is held: its root is missing, another folder than the one replicated, empty while the journal knows
   * files under it, or unreadable (state, root, expected, found, since); the agent journals nothing of it until the
   * root is back or `tidemark accept-root SET` accepts it. Null when not held.
   */
  rootHold: RootHold | null;
  /** The agent cannot journal (the disk holding its state folder is full): changes wait for the catch-up scan once there is space. */
  journalProblem: AgentProblem | null;
  /** Why the state folder holds no space ballast (the agent's room to mark messages sent on a full disk), or null: a note, not a problem. */
  spaceBallast: string | null;
  /** Journals of the state folder found corrupt and set aside (kept for inspection), oldest first: a note; the new generation's resync shows as problems until done. */
  journalSetAside: SetAsideJournal[];
  target:
    | {
        reachable: true;
        lastSeqApplied: number;
        state: SetStatus["state"];
        reason?: string;
        lastRejected?: SetStatus["lastRejected"];
        /** The generation the target's chain is in, and when and why it last changed. */
        generation?: string;
        lastGenerationChange?: NonNullable<SetStatus["generations"]>[number];
        /** A second writer on the set's journal: the seq whose changes differ from what was applied, both described; the set is held until adopted. */
        twoWriters?: SetStatus["twoWriters"];
        /** The last repeated message whose seqs could not be compared with what was applied (history gone): dropped as a redelivery; a note. */
        duplicateUnchecked?: SetStatus["duplicateUnchecked"];
        /** Messages refused as not the owner's, and the last of them. */
        refused?: SetStatus["refused"];
        /** A marker sent straight to the queue whose action runs now, holding the set's stream (queueMarkerLine). */
        queueMarker?: SetStatus["queueMarker"];
        /** The newest snapshot and how its digest and content checks came out. */
        lastSnapshot?: SetStatus["lastSnapshot"];
        /** Folder changes from this history segment on are applied (in the history) but not written to the live folder objects yet. */
        folderWritesFrom?: number;
        /** History segments the applier could not read when it replayed folder writes: the live folders may lack what they held. */
        folderWritesLost?: SetStatus["folderWritesLost"];
        /** Entries the newest history checkpoint could not read: restoring a moment from it names them as not restorable. */
        checkpointUnreadable?: SetStatus["checkpointUnreadable"];
        /** The key the target takes the set's changes from (state/<set>/owner.json); this host's is ownerKeyId. */
        owner?: { keyId: string; since: string; how: string } | { error: string };
        /** When the target last applied anything (absent: nothing yet, or an applier that does not record it); updatedAt also moves with refusals. */
        appliedAt?: string;
        updatedAt: string;
      }
    | { reachable: false; error: string };
  /**
   * While the target's owner record of the set names another key than this host's: whether this host's key was made
   * because its state folder was found to be a copy (when, of which place, the copied key's id and file); else null.
   */
  hostKeyCopied: CopiedKey | null;
  /** What is wrong with the set, one entry per problem (see set-health.ts); empty when nothing is. */
  problems: Problem[];
  /** No problems: the set is in sync or catching up. */
  healthy: boolean;
  /** Healthy, and the target applied everything this journal's generation holds: nothing held, skipped or rejected. */
  inSync: boolean;
  /** Nothing waiting in the journal, and the target applied everything journaled in this generation. */
  caughtUp: boolean;
  /** The newest recovery drill the target holds a report of; null when none (or unreadable). */
  lastDrill: { id: string; passed: boolean; finishedAt: string; ageSeconds: number; problems: number; tornCount?: number; check?: DrillCheck } | null;
  /** Drill reports no agent took in time, kept in the state folder until the set's next agent journals them (drill-kept.ts). */
  drillReportsKept: { id: string; passed: boolean; finishedAt: string; file: string }[];
}

/** Longest a Lambda invocation runs: a queue marker held longer than its timeout and this died with its applier (the message is retried). */
const INVOCATION_MAX_MS = 15 * 60_000;

/**
 * The queue marker the set's status names, while it still holds the stream: once the target applied the set's messages
 * after its start, the stream moved past it (its message went, finished or to the dead-letter queue) and it holds nothing.
 */
export function queueMarkerHolding(status: Pick<SetStatus, "queueMarker" | "appliedAt">): SetStatus["queueMarker"] {
  const marker = status.queueMarker;
  if (!marker) return undefined;
  if (status.appliedAt !== undefined && Date.parse(status.appliedAt) > Date.parse(marker.since)) return undefined;
  return marker;
}

/** The status line of a marker sent straight to the queue whose action holds the set's stream now. */
export function queueMarkerLine(marker: NonNullable<SetStatus["queueMarker"]>, now: Date): string {
  const label = marker.label !== undefined ? ` ("${marker.label}")` : "";
  const sender = marker.sender !== undefined ? `sender ${marker.sender}` : "sender not named by the queue";
  // A snapshot goes on across invocations, its timeout no limit on the hold.
  const resumable = marker.action === "snapshot" || marker.action === "ebs-snapshot";
  const limit = marker.timeoutSeconds > 0 && !resumable ? `, for at most ${marker.timeoutSeconds} s` : "";
  const overdue =
    now.getTime() - Date.parse(marker.since) > marker.timeoutSeconds * 1000 + INVOCATION_MAX_MS
      ? "; it has run longer than its timeout and an invocation: the applier likely stopped in it, and the message is retried"
      : "";
  return `marker ${marker.id}${label}, sent straight to the queue (not by this host's agent; ${sender}), holds the set's stream since ${marker.since}: the set's messages wait until its ${marker.action} action ends${limit}${overdue}`;
}

/**
 * The line for a rejected message the set's health no longer counts. Its error names a path from the source host
 * (untrusted), so it is escaped as every other such line: a U+202E or a C1 control cannot redraw what follows it.
 */
export function oldRejectedLine(rejected: Pick<NonNullable<SetStatus["lastRejected"]>, "messageId" | "at" | "error">): string {
  return escapeControl(
    `last rejected message ${rejected.messageId} at ${rejected.at} (no longer counted: older than 24 hours, or a resync applied since superseded its records): ${rejected.error}`,
  );
}

/** Exit code of `tidemark status` when a set is not healthy (2 stays for usage errors). */
export const STATUS_UNHEALTHY = 1;

const EMPTY: SetCounters = { nextSeq: 1, sentSeq: 0, backlogRecords: 0, backlogBytes: 0, messagesSent: 0, bytesSent: 0, lastSendError: null, overflowed: false, watcherProblem: null };

async function ownerOf(store: S3Store, set: string): Promise<{ owner?: { keyId: string; since: string; how: string } | { error: string } }> {
  try {
    const owner = await readOwner(store, set);
    return owner ? { owner: { keyId: owner.keyId, since: owner.since, how: owner.how } } : {};
  } catch (error) {
    if (error instanceof OwnerRecordError) return { owner: { error: error.message } };
    throw error;
  }
}

/** The oldest message the target has not applied, and (only when it is old enough to matter) whether a marker's action holds the stream. */
async function stallFacts(journal: Journal | undefined, store: S3Store, set: string, target: SetReport["target"]): Promise<Pick<SetFacts, "unapplied" | "markerRunning">> {
  const unapplied = target.reachable ? journal?.sets.firstSendAfter(set, target.lastSeqApplied) : undefined;
  if (!unapplied) return {};
  if (Date.now() - unapplied.at < STALLED_MS) return { unapplied };
  return { unapplied, markerRunning: await markerRunning(store, set).catch(() => false) };
}

/**
 * A status read is a few small objects: an endpoint that accepts the
 * connection and never answers (a black-holed route, a stuck proxy) fails it
 * in this long per attempt rather than the SDK's minute, so cron and
 * monitoring get an answer in well under a minute.
 */
export const STATUS_IDLE_TIMEOUT_MS = 15_000;

/**
 * The journal, opened to read (no write lock taken: status reads while another process holds one), or why it could
 * not be: another process holds it locked longer than SQLite's busy timeout. Undefined both when there is none.
 */
function openJournal(stateDir: string, check: boolean): { journal?: Journal; busy?: string; unusable?: string } {
  const path = join(stateDir, "journal.db");
  if (!existsSync(path)) return {};
  // A running agent that found it corrupt stopped: whatever still reads in it is not to be trusted.
  const mark = corruptMark(stateDir);
  if (mark !== undefined) return { unusable: new JournalCorruptError(path, new Error(`found by the agent at ${mark.at}: ${mark.reason}`)).message };
  try {
    return { journal: Journal.open(stateDir, { reader: true, check }) };
  } catch (error) {
    // Named as the journal's problem, the target side still read.
    if (error instanceof JournalCorruptError || error instanceof JournalUnreadableError) return { unusable: error.message };
    if (!isJournalBusy(error)) throw error;
    return { busy: journalBusyProblem(path) };
  }
}

export async function collectStatus(configFile: string): Promise<SetReport[]> {
  const config = loadConfig(configFile);
  const agent = await agentPresence(config.stateDir);
  // Checked page by page while no agent runs (a running one checked it when it started): damage is named before the start that sets it aside.
  const { journal, busy: locked, unusable } = openJournal(config.stateDir, !agent.running);
  // A journal another process holds locked, or one that is corrupt, is named (and the target side still read), not a bare SQLite error.
  const busy = locked ?? unusable;
  const recorded = readProblem(config.stateDir);
  const journalProblem = busy ? { since: new Date().toISOString(), problem: recorded ? `${busy}; the agent's own problem (since ${recorded.since}): ${recorded.problem}` : busy } : recorded;
  const journalSetAside = journalsSetAside(config.stateDir);
  const spaceBallast = spaceBallastNote(config.stateDir);
  // This host's key, to tell a set another host owns (a key file the agent cannot read is the agent's to report).
  const hostKeyId = ((): string | undefined => {
    try {
      return readOwnerKey(config.stateDir)?.keyId;
    } catch {
      return undefined;
    }
  })();
  // Whether that key was made because the state folder was found copied: a set another host owns is then likely the original's.
  const hostKeyCopied = hostKeyId === undefined ? undefined : copiedKeyOf(readOwnerPlace(config.stateDir), hostKeyId);
  // Read once for every set: each read lists and parses the whole folder.
  const keptReports = keptDrillReports(config.stateDir);
  const unclaimable = keptReports.length > 0 ? keptReportsUnclaimable(config.stateDir) : undefined;
  const s3 = makeS3Client(clientOptionsOf(config, { maxAttempts: 2, idleTimeoutMs: STATUS_IDLE_TIMEOUT_MS, minimumTransfer: TARGET_READ_MINIMUM_TRANSFER }));
  const store = new S3Store(s3, config.bucket);
  try {
    return await Promise.all(
      config.sets.map(async (spec): Promise<SetReport> => {
        const counters = journal?.sets.counters(spec.name) ?? EMPTY;
        const generation: JournalGeneration | undefined = journal?.sets.knownGeneration(spec.name);
        let target: SetReport["target"];
        let facts: SetFacts["target"];
        try {
          const status = await readSetStatus(store, spec.name);
          facts = { status };
          // The first generation a set had is no change; a later one is (a journal lost or replaced).
          const change = (status.generations?.length ?? 0) > 1 ? status.generations?.at(-1) : undefined;
          target = {
            reachable: true,
            lastSeqApplied: status.lastSeq,
            state: status.state,
            ...(status.reason ? { reason: status.reason } : {}),
            ...(status.lastRejected ? { lastRejected: status.lastRejected } : {}),
            ...(status.lastSnapshot ? { lastSnapshot: status.lastSnapshot } : {}),
            ...(status.folderWritesFrom !== undefined ? { folderWritesFrom: status.folderWritesFrom } : {}),
            ...(status.folderWritesLost ? { folderWritesLost: status.folderWritesLost } : {}),
            ...(status.checkpointUnreadable ? { checkpointUnreadable: status.checkpointUnreadable } : {}),
            ...(status.generation ? { generation: status.generation } : {}),
            ...(change ? { lastGenerationChange: change } : {}),
            ...(status.twoWriters ? { twoWriters: status.twoWriters } : {}),
            ...(status.duplicateUnchecked ? { duplicateUnchecked: status.duplicateUnchecked } : {}),
            ...(status.refused ? { refused: status.refused } : {}),
            ...((queueMarker) => (queueMarker ? { queueMarker } : {}))(queueMarkerHolding(status)),
            ...(await ownerOf(store, spec.name)),
            ...(status.appliedAt ? { appliedAt: status.appliedAt } : {}),
            updatedAt: status.updatedAt,
          };
        } catch (error) {
          const message = (error as Error).message || (error as Error).name;
          facts = { error: message };
          target = { reachable: false, error: message };
        }
        // A target that did not answer the status read is not asked again for the drill report (each read waits its timeout).
        const drill = target.reachable ? await latestDrillReport(store, spec.name).catch(() => undefined) : undefined;
        const skipped: NotReplicated[] = journal
          ? [...journal.skipped(spec.name), ...skippedNow(journal.skippedNames, spec.name, spec.root).map(({ path, reason }) => ({ path, reason }))]
          : [];
        const held = journal ? heldNow(journal.held, spec.name) : [];
        const scanning = journal ? scanNow(journal.held, spec.name) : null;
        const uploading = journal && agent.running ? uploadsNow(journal.uploads, spec.name) : [];
        const bandwidthSince = journal && agent.running ? journal.sets.bandwidthWaitSince(spec.name) : null;
        const scanFailed = journal ? scanFailureNow(journal.held, spec.name) : null;
        const recovering = journal?.recoveries.of(spec.name) ?? null;
        const rootHold = journal?.roots.held(spec.name) ?? null;
        const journalMissing = journal ? (journal.sets.known(spec.name) ? {} : { setNotJournaled: join(config.stateDir, "journal.db") }) : busy ? {} : { journalMissing: join(config.stateDir, "journal.db") };
        const stall = await stallFacts(journal, store, spec.name, target);
        const owner = target.reachable ? target.owner : undefined;
        const notOwner = hostKeyId !== undefined && owner !== undefined && "keyId" in owner && owner.keyId !== hostKeyId ? { notOwner: { ownerKeyId: owner.keyId, ownerSince: owner.since, hostKeyId, ...(hostKeyCopied ? { hostKeyCopied } : {}) } } : {};
        const ownerUnreadable = owner !== undefined && "error" in owner ? { ownerUnreadable: owner.error } : {};
        const drillKept = keptReports.filter(({ report }) => report.set === spec.name).map(({ file, report }) => ({ id: report.id, passed: report.passed, finishedAt: report.finishedAt, file }));
        const setFacts: SetFacts = { set: spec.name, drillKept, ...(unclaimable && drillKept.length > 0 ? { drillKeptUnclaimable: unclaimable } : {}), counters, generation, skipped, held, scanning, scanFailed, recovering, ...(rootHold ? { rootHold } : {}), ...journalMissing, ...stall, ...notOwner, ...ownerUnreadable, drill, journalProblem, agent, target: facts, now: new Date() };
        const problems = findProblems(setFacts);
        const upToDate = caughtUp(setFacts);
        return {
          set: spec.name,
          backlog: { records: counters.backlogRecords, bytes: counters.backlogBytes },
          sent: { messages: counters.messagesSent, bytes: counters.bytesSent, lastSeq: counters.sentSeq },
          lastSendError: counters.lastSendError,
          journalFull: counters.overflowed,
          watcherProblem: counters.watcherProblem,
          generation: generation?.id ?? null,
          skipped,
          held,
          uploading,
          ...(bandwidthSince !== null ? { waitingForBandwidth: { since: bandwidthSince } } : {}),
          scanning,
          scanFailed,
          recovering,
          rootHold,
          journalProblem,
          spaceBallast,
          journalSetAside,
          target,
          hostKeyCopied: setFacts.notOwner?.hostKeyCopied ?? null,
          problems,
          healthy: problems.length === 0,
          inSync: problems.length === 0 && upToDate,
          caughtUp: upToDate,
          lastDrill: drill
            ? {
                id: drill.id,
                passed: drill.passed,
                finishedAt: drill.finishedAt,
                ageSeconds: Math.max(0, Math.round((Date.now() - Date.parse(drill.finishedAt)) / 1000)),
                problems: drill.problemCount,
                ...(drill.tornCount !== undefined ? { tornCount: drill.tornCount } : {}),
                ...(drill.check ? { check: { command: drill.check.command, passed: drill.check.passed, code: drill.check.code, timedOut: drill.check.timedOut } } : {}),
              }
            : null,
          drillReportsKept: drillKept,
        };
      }),
    );
  } finally {
    journal?.close();
    s3.destroy();
  }
}

/** The kinds of a set's problems, each once in the order first found, with its count when more than one ("skipped-path ×3"). */
export function problemKinds(problems: readonly { kind: string }[]): string {
  const counts = new Map<string, number>();
  for (const { kind } of problems) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return [...counts].map(([kind, n]) => (n > 1 ? `${kind} ×${n}` : kind)).join(", ");
}

/** "catching up", with what keeps the set from being in sync besides the target's progress. */
function catchingUp(r: SetReport): string {
  const why = [r.recovering ? "recovering" : "", r.scanning ? "scanning" : "", r.held.length > 0 ? `${r.held.length} held` : ""].filter(Boolean);
  return why.length > 0 ? `catching up (${why.join(", ")})` : "catching up";
}

export const statusCommand: Command = {
  name: "status",
  help: `Usage: tidemark status [--json] [--config FILE]

Per set: the journal backlog (records and bytes not yet accepted by the
queue), messages and bytes sent, the last seq sent, the last seq the target
applied (read from the target bucket), and the state:
  in sync       the target applied everything this journal holds (in its
                current generation), the agent holds no file back, no scan
                is unfinished, and nothing is wrong
  catching up   nothing is wrong; the target has not applied all of it yet,
                or the agent holds back the newest version of a busy large
                file until its previous one is sent and rebuilt by the
                target: shown as "catching up (N held)", each file named
                below the table with since when and why (\`held\` in --json,
                with whether the agent holding it still runs; a stopped
                agent's next start captures the file), or a scan of the
                whole set has not finished ("catching up (scanning)": what
                it has not reached is not journaled yet), or a recovery
                has not finished ("catching up (recovering)": its
                verification has not made the target equal the source yet;
                \`recovering\` in --json; a stopped agent's next start runs
                it again)
  HELD          the set's root is missing (root-missing), another folder
                than the one replicated (root-changed: an unmounted disk's
                mount point, a folder moved in, a symlink pointed
                elsewhere), empty while the journal knows files under it
                (root-empty), unreadable (root-unreadable) or not
                answering a look within 10 s (root-unresponsive: a hung
                network file system): the agent journals nothing of the
                set (no deletes, no markers) and the target keeps its
                last copy; the problem line names the root, what was
                expected and found, since when, and what to do: put the
                root back (the set resumes by itself) or
                \`tidemark accept-root SET\` (\`rootHold\` in --json)
  NOT IN SYNC   something is wrong; each problem is listed below the table:
                no agent running on the state folder (agent-stopped: the
                source's changes since it stopped are not replicated),
                an agent that answers nothing on its control socket
                (agent-not-answering: stopped with SIGSTOP, or hung),
                the target unreachable or holding the set out of sync,
                two writers on one journal (two-writers: another host, a
                copy of this one with its key, sent other changes at seqs
                the target applied; the target applies nothing of the set
                until the copy is stopped and \`tidemark adopt SET\` runs on
                the host that should own it; \`target.twoWriters\` in --json),
                another host owning the set on the target (this host's
                messages are refused; \`tidemark adopt SET\` moves it; when
                this host's key was made because its state folder was found
                to be a copy, the line says since when and of which place:
                \`hostKeyCopied\` in --json), the
                target ahead of the journal or in another generation (journal
                lost or restored from an older copy), no journal at all (the
                agent never ran with this state folder), a target that has
                not applied a message sent over 30 minutes ago nor anything
                else since (the applier failing on it, or not running; a
                running marker action excepted), a message of the owner's
                rejected in the last 24 hours (rejected-message), a full journal, a failed watcher, a
                scan that failed (what, when, its error; named until a
                later scan succeeds), a send error, paths not replicated (the target refused their latest change
                for good and keeps their last good version, or cannot carry
                their names, or the agent may not read them, or they are
                sockets, FIFOs or devices; each with what to do), a full
                disk under the journal, a failed
                recovery drill (or one whose report is kept unsent in the
                state folder, or kept reports no agent can send:
                drill-report-kept), a newest snapshot that failed its digest or
                content check or holds files that kept changing while its
                barrier read them, history segments the target could not read
                when it replayed folder changes (the live folders may lack
                them until \`tidemark mirror SET --mode full\`), messages
                refused as not the owner's in the last 24 hours (named with
                their sender and key; nothing of them was applied, nothing
                of the owner's lost: garbage sent to the set's message group,
                a console marker with a typo, a marker sent straight to
                the queue by a sender the stack does not allow (another
                host's role; with tidemark:markerSenders, anyone but the
                set's host role and the listed senders): refused-sender)
A large payload (over 32 MiB: a file, a delta's changed blocks, a marker's list)
the agent is staging is named with how far its upload got (\`uploading\` in
--json), and since when it waits for the bandwidth budget (the config's
"bandwidth" limit; \`waitingForBandwidth\`) while it does: the records after
it are sent once it is staged. The set's next message waiting for that
budget (a large upload before it is charged its whole size) is named too
(the set's \`waitingForBandwidth\` in --json).
The last recovery drill's result and age (\`tidemark drill\`) are shown too, with
any drill whose report no agent took in time (kept in the state folder until
the set's next agent sends it; \`drillReportsKept\` in --json; the set is
not caught up meanwhile), and
folder changes the target applied (in its history) but has not yet written
to the live mirror's folder objects (a set that goes quiet keeps them until
its next message, a snapshot or a verification). A marker sent straight to
the queue whose action runs now is named with since when, its sender and what
the set's messages wait for (\`target.queueMarker\` in --json).
A state folder holding no space ballast (the agent's room to mark messages
sent on a disk filled to its last byte) is named on a line of its own, with
why (\`spaceBallast\` in --json); it is no problem. So is each journal found
corrupt and set aside (\`journalSetAside\` in --json: when, why, the file
kept); a corrupt journal not yet set aside (the agent's next start does) or
one this user may not open is a journal-problem.

Exit code: 0 when every set is healthy (in sync or catching up), ${STATUS_UNHEALTHY} when
any set has a problem, is held, or its target is unreachable; 2 on usage errors.

Options:
  --json          print a JSON object (for scripts)
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

Examples:
  tidemark status
  tidemark status || alert "tidemark: a set is not healthy"
  tidemark status --json | jq '.sets[] | select(.healthy | not) | .problems'`,
  options: { json: { type: "boolean" }, config: { type: "string" } },
  async run(values) {
    const reports = await collectStatus(configPath(stringOption(values.config)));
    const code = reports.every((r) => r.healthy) ? 0 : STATUS_UNHEALTHY;
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ sets: reports }, null, 2)}\n`);
      return code;
    }
    const rows = reports.map((r) => [
      r.set,
      `${r.backlog.records} (${formatBytes(r.backlog.bytes)})`,
      `${r.sent.messages} msgs, ${formatBytes(r.sent.bytes)}`,
      String(r.sent.lastSeq),
      r.target.reachable ? String(r.target.lastSeqApplied) : "?",
      r.inSync ? "in sync" : r.healthy ? catchingUp(r) : `${r.rootHold ? "HELD" : "NOT IN SYNC"} (${problemKinds(r.problems)})`,
    ]);
    process.stdout.write(`${table(["SET", "BACKLOG", "SENT", "LAST SENT", "LAST APPLIED", "STATE"], rows)}\n`);
    // The state folder's, said once for every set.
    const ballast = reports[0]?.spaceBallast;
    if (ballast) process.stdout.write(`state folder: ${escapeControl(ballast)}\n`);
    for (const aside of reports[0]?.journalSetAside ?? []) process.stdout.write(`state folder: ${escapeControl(setAsideLine(aside))}\n`);
    for (const r of reports) {
      for (const problem of r.problems) process.stdout.write(`${r.set}: ${escapeControl(problem.message)}\n`);
      if (r.recovering) {
        process.stdout.write(`${r.set}: recovering since ${r.recovering.since} (${r.recovering.mode} mirror: ${escapeControl(r.recovering.reason)}): the target is not known to equal the source until its verification is reported; a stopped agent's next start runs it again\n`);
      }
      if (r.scanning) {
        const stopped = r.scanning.agentRunning ? "" : " (the agent running it is not running: its next start scans again)";
        process.stdout.write(`${r.set}: a scan of the set began at ${r.scanning.since} and has not finished: what it has not reached is not journaled yet${stopped}\n`);
      }
      for (const upload of r.uploading) process.stdout.write(`${r.set}: ${escapeControl(uploadLine(upload))}\n`);
      if (r.waitingForBandwidth) process.stdout.write(`${r.set}: its next message waits since ${r.waitingForBandwidth.since} for the bandwidth budget (the config's "bandwidth" limit: an upload before it is charged its whole size), and the records after it with it\n`);
      for (const file of r.held) {
        const stopped = file.agentRunning ? "" : " (the agent holding it is not running: its next start captures the file)";
        process.stdout.write(`${r.set}: held back since ${file.since}: ${escapeControl(file.path)}: ${file.reason}${stopped}\n`);
      }
      if (r.target.reachable && r.target.queueMarker) process.stdout.write(`${r.set}: ${escapeControl(queueMarkerLine(r.target.queueMarker, new Date()))}\n`);
      const rejected = r.target.reachable ? r.target.lastRejected : undefined;
      if (rejected && !r.problems.some((p) => p.kind === "rejected-message")) {
        process.stdout.write(`${r.set}: ${oldRejectedLine(rejected)}\n`);
      }
      if (r.target.reachable && r.target.folderWritesFrom !== undefined) {
        process.stdout.write(
          `${r.set}: folder changes from history segment ${r.target.folderWritesFrom} on are applied (restores and snapshots have them) but not yet written to the live mirror's folder objects: they go with a later message of the set (once a few minutes old), or before a snapshot or verification\n`,
        );
      }
      if (r.target.reachable && r.target.lastGenerationChange) {
        const change = r.target.lastGenerationChange;
        process.stdout.write(`${r.set}: generation ${change.id} since ${change.since} (seq ${change.seq}): ${change.reason}\n`);
      }
      if (r.lastDrill) {
        const d = r.lastDrill;
        const age = d.ageSeconds < 7200 ? `${Math.round(d.ageSeconds / 60)} min` : `${(d.ageSeconds / 3600).toFixed(1)} h`;
        const torn = d.tornCount !== undefined ? `, ${d.tornCount} file(s) possibly torn, restored as read` : "";
        process.stdout.write(`${r.set}: last drill ${d.passed ? "passed" : `FAILED ${escapeControl(drillFailure({ problemCount: d.problems, check: d.check }))}`} ${age} ago (${escapeControl(d.id)}${torn})\n`);
      }
      for (const kept of r.drillReportsKept) {
        process.stdout.write(
          `${r.set}: drill ${kept.id} ${kept.passed ? "passed" : "FAILED"} at ${kept.finishedAt}; its report is not sent to the target yet: kept at ${kept.file}, sent by the set's next agent on this state folder (\`tidemark run\` within a minute, or at its start; or any command's own agent for the set)\n`,
        );
      }
    }
    return code;
  },
};
