// Verification and mirror modes as an operator runs them (`tidemark verify`,
// `tidemark mirror`): journal, wait for the target's report, repair.

import type { OrphanPolicy, SetStatus, VerifyReport } from "../contract/layout.ts";
import type { PruneReport } from "../contract/tasks.ts";
import type { Agent, QueuedMarker } from "./agent.ts";
import type { TaskFields } from "../contract/tasks.ts";
import type { ScanReport } from "./scan.ts";
import type { WhileHeld } from "./held-wait.ts";
import { waitOnTarget } from "./target-wait.ts";
import type { NotReplicated } from "./set-health.ts";

export const MIRROR_MODES = ["full", "diff", "checksum"] as const;
export type MirrorMode = (typeof MIRROR_MODES)[number];

/** What a long operation reports while it runs. */
export type Progress =
  | { phase: "scan"; entries: number; changes: number; bytes: number; total?: number; reading?: { path: string; size: number } }
  /** `running`: the target reached the marker and its action (a snapshot and its checks included) still runs. */
  | { phase: "wait"; seq: number; appliedSeq: number; running?: boolean }
  | { phase: "repair"; entries: number }
  | { phase: "restore"; files: number; totalFiles: number; bytes: number; totalBytes: number; unit?: "files" | "blocks" }
  /** A drill comparing the restored tree with its recovery point. */
  | { phase: "check"; entries: number; totalEntries: number };

/** A scan's progress: its counts, the total when known, and the long read under way (ScanReport.reading). */
function scanProgress(scan: Readonly<ScanReport>, total?: number): Progress {
  return { phase: "scan", entries: scan.entries, changes: scan.changes, bytes: scan.bytes, ...(total !== undefined ? { total } : {}), ...(scan.reading ? { reading: { ...scan.reading } } : {}) };
}

export interface OperationDeps {
  readonly agent: Agent;
  /** The report of a verification, once the target wrote it. */
  readonly readReport: (set: string, id: string) => Promise<VerifyReport | undefined>;
  /** The report of a prune, once the target wrote it. */
  readonly readPruneReport: (set: string, id: string) => Promise<PruneReport | undefined>;
  /** The target's status of a set: its checkpoint and generation, while waiting. */
  readonly targetStatus: (set: string) => Promise<SetStatus>;
  readonly onProgress?: (progress: Progress) => void;
  /** How long to wait for the target's report. @default 30 minutes */
  readonly timeoutMs?: number;
  /** Give up when the target has not moved for this long. @default 10 minutes */
  readonly stallMs?: number;
  /** True when a marker's action holds the set's stream: a wait behind it is not stalled. */
  readonly markerRunning?: (set: string) => Promise<boolean>;
  readonly pollMs?: number;
  /** Ends a wait on the target at once: the agent is stopping, and no wait may keep its process alive. */
  readonly signal?: AbortSignal;
  /**
   * What a wait on the target does while the set's sends are held (another key owns it, held-wait.ts): an
   * operator's operation fails at once, the agent's own (recoverSet, the mirror on start) waits for the hold to end.
   * @default "fail"
   */
  readonly whileHeld?: WhileHeld;
}

export class OperationTimeoutError extends Error {
  override name = "OperationTimeoutError";
}

export interface VerifyResult {
  readonly report: VerifyReport;
  /** Changes journaled to repair what differed (0 without --repair). */
  readonly repaired: number;
  /** What the set holds and does not replicate (status names them): the manifest leaves them out, so none was compared. Absent from an older running agent's answer. */
  readonly skipped?: readonly NotReplicated[];
  /**
   * Files whose content the verification's own scan found changed behind an unchanged size, mtime and mode, and
   * journaled ahead of it (how many, and the first 100): the target was behind for them although everything looked sent, and snapshots taken
   * before may hold their old content. Absent from an older running agent's answer.
   */
  readonly changedBehindStat?: { readonly count: number; readonly paths: readonly string[] };
}

/** Waits for the target's report of a record journaled just now; fails with the reason when it will not come (target-wait.ts). */
function waitForReport<T>(deps: OperationDeps, what: string, read: () => Promise<T | undefined>, set: string, seq: number): Promise<T> {
  return waitOnTarget<T>(
    { set, what: `the ${what} (seq ${seq})`, seq, generation: deps.agent.journal.sets.generation(set).id },
    async () => {
      const report = await read();
      return report ? { done: report } : undefined;
    },
    () => deps.targetStatus(set),
    {
      timeoutMs: deps.timeoutMs ?? 30 * 60_000,
      ...(deps.stallMs !== undefined ? { stallMs: deps.stallMs } : {}),
      ...(deps.markerRunning ? { busy: () => deps.markerRunning?.(set) ?? Promise.resolve(false) } : {}),
      held: { by: () => deps.agent.sendsHeldBy(set), policy: deps.whileHeld ?? "fail" },
      stuck: () => {
        const error = deps.agent.journal.sets.counters(set).lastSendError;
        return error === null ? undefined : `this host's sends of the set fail (retried): ${error}`;
      },
      ...(deps.pollMs !== undefined ? { pollMs: deps.pollMs } : {}),
      ...(deps.onProgress ? { onProgress: deps.onProgress } : {}),
      ...(deps.signal ? { signal: deps.signal } : {}),
    },
  );
}

export async function runVerify(
  deps: OperationDeps,
  set: string,
  options: { deep: boolean; repair: boolean; orphans: OrphanPolicy },
): Promise<VerifyResult> {
  const total = deps.agent.journal.index.entryCount(set);
  const onProgress = (scan: Readonly<ScanReport>) => deps.onProgress?.(scanProgress(scan, total));
  const { id, seq, scan } = await deps.agent.journalVerify(set, { deep: options.deep, orphans: options.orphans, onProgress });
  const changedBehindStat = scan.changedBehindStat ?? { count: 0, paths: [] };
  const report = await waitForReport(deps, "verification", () => deps.readReport(set, id), set, seq);
  if (!options.repair) return { report, repaired: 0, skipped: deps.agent.notReplicated(set), changedBehindStat };
  deps.onProgress?.({ phase: "repair", entries: report.missing.length + report.different.length });
  const repaired = await deps.agent.repair(set, report);
  return { report, repaired, skipped: deps.agent.notReplicated(set), changedBehindStat };
}

/**
 * Brings a set that went out of sync back: full resends everything behind a
 * resync record; diff and checksum restart the seq chain and repair only
 * what a verification finds missing or different. Each ends with that
 * verification deleting (or moving aside) what the source no longer holds.
 */
export async function recoverSet(given: OperationDeps, set: string, reason: string, mode: MirrorMode, orphans: OrphanPolicy, resyncPending = false, compare?: () => Promise<void>): Promise<void> {
  // The agent's own wait: a hold (another key owns the set) pauses it until `tidemark adopt`, whatever the caller
  // asked; failing it would only journal the recovery again at the next status read.
  const deps: OperationDeps = { ...given, whileHeld: "wait" };
  // Owed from before anything is journaled until the repairs are (pending-recoveries.ts): killed in between, the
  // agent's next start runs it again, where a journal continuing the target's chain would show no break.
  const { journal } = deps.agent;
  const owed = journal.atomically(() => journal.recoveries.begin(set, { mode, orphans, reason }));
  try {
    await recoverOwed(deps, set, reason, mode, orphans, resyncPending, compare);
    journal.atomically(() => journal.recoveries.end(set, owed));
  } finally {
    journal.recoveries.settle(set, owed);
  }
}

/**
 * resyncPending: a resync journaled before and not applied yet restarts the chain; the verification behind repairs
 * whatever else is missing. compare: a journal the target is ahead of learns what the target holds first
 * (recovery-baseline.ts), so the verification's repairs do not send it whole.
 */
async function recoverOwed(deps: OperationDeps, set: string, reason: string, mode: MirrorMode, orphans: OrphanPolicy, resyncPending: boolean, compare?: () => Promise<void>): Promise<void> {
  // A volume has no verification: every block is read again and the target's block map rebuilt.
  if (deps.agent.isVolume(set)) {
    await deps.agent.fullMirror(set, reason);
    return;
  }
  // Whatever the target holds of the set came from its stream: what the source no longer holds is a deletion the
  // target missed (made while no journal saw it, or in a lost message). A recovery applies it, or moves it aside
  // when the config says so, rather than only reporting it; the history keeps it restorable for the window.
  const missed: OrphanPolicy = orphans === "move-aside" ? "move-aside" : "delete";
  if (resyncPending) deps.agent.log.info("the resync of an earlier run is not applied yet; journaling only the verification", { set });
  else if (mode === "full") await deps.agent.fullMirror(set, reason);
  else await deps.agent.restartChain(set, reason);
  await compare?.();
  await runVerify(deps, set, { deep: mode === "checksum", repair: true, orphans: missed });
}

export interface MirrorResult {
  readonly mode: MirrorMode;
  readonly scan?: ScanReport;
  readonly verify?: VerifyResult;
}

/**
 * full: every entry sent again behind a resync record, then orphans handled
 * by a verification. diff: the target's
 * sizes, mtimes and hashes compared with the source, what differs sent.
 * checksum: both sides hashed, only differing blocks sent.
 */
export async function runMirror(deps: OperationDeps, set: string, mode: MirrorMode, orphans: OrphanPolicy): Promise<MirrorResult> {
  const { recoveries } = deps.agent.journal;
  // Only a recovery owed before the mirror began is done by it: one begun meanwhile journaled a resync after it.
  const owed = recoveries.tokenOf(set);
  const result = await mirrorSet(deps, set, mode, orphans);
  // Verified, the mirror did what that recovery would (the log of a failed one suggests running it).
  if (result.verify && owed !== undefined) deps.agent.journal.atomically(() => recoveries.end(set, owed));
  return result;
}

async function mirrorSet(deps: OperationDeps, set: string, mode: MirrorMode, orphans: OrphanPolicy): Promise<MirrorResult> {
  if (deps.agent.isVolume(set)) {
    // Every block read and hashed, and sent again over a cleared block map: a volume's only mirror, whatever the mode.
    const scan = await deps.agent.fullMirror(set, `${mode} mirror requested`, (s) => deps.onProgress?.(scanProgress(s)));
    return { mode, scan };
  }
  if (mode === "full") {
    const total = deps.agent.journal.index.entryCount(set);
    const scan = await deps.agent.fullMirror(set, "full mirror requested", (s) =>
      deps.onProgress?.(scanProgress(s, total)),
    );
    // Everything was sent again; a verification behind it finds what the target holds beyond the source.
    const verify = await runVerify(deps, set, { deep: false, repair: true, orphans });
    return { mode, scan, verify };
  }
  const verify = await runVerify(deps, set, { deep: mode === "checksum", repair: true, orphans });
  return { mode, verify };
}

/** Journals a prune (the applier keeps the newest `keep` snapshots) and waits for the target's report. */
export async function runPrune(deps: OperationDeps, set: string, keep: number): Promise<PruneReport> {
  const { id, seq } = await deps.agent.journalPrune(set, keep);
  return waitForReport(deps, "prune", () => deps.readPruneReport(set, id), set, seq);
}

/** This agent does not insert task markers (config tasks.enabled is false). */
export class TasksDisabledError extends Error {
  override name = "TasksDisabledError";
}

export interface TaskRequest {
  readonly fields: TaskFields;
  readonly onQueue?: string;
  readonly onTransmit?: string;
}

/** Journals a task marker behind a barrier scan of the set, unless this agent's config disables markers. */
export async function queueTask(deps: OperationDeps, set: string, request: TaskRequest, config: { file: string; tasks: { enabled: boolean } }): Promise<QueuedMarker> {
  if (!config.tasks.enabled) {
    throw new TasksDisabledError(
      `task markers are disabled for this agent (tasks.enabled is false in ${config.file}); markers sent to the queue from elsewhere still run on the target`,
    );
  }
  const total = deps.agent.journal.index.entryCount(set);
  return deps.agent.insertMarker(set, {
    fields: request.fields,
    ...(request.onQueue !== undefined ? { onQueue: request.onQueue } : {}),
    ...(request.onTransmit !== undefined ? { onTransmit: request.onTransmit } : {}),
    onProgress: (scan) => deps.onProgress?.(scanProgress(scan, total)),
  });
}
