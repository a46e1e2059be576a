// The agent: for each set, a barrier scan at start, then the watcher's hints
// captured into the journal, a sender draining the journal into the queue,
// and a watch on the target's status that resyncs a set gone out of sync.
// Each set's work is split by job (set-capture, set-operations,
// set-recovery, set-sender); this file wires them and runs them per set.
// With monitorEnabled=false nothing runs in the background: tests step it.

import type { SetStatus, VerifyReport } from "../contract/layout.ts";
import type { Compression } from "../contract/wire.ts";
import type { DrillReport } from "../contract/drills.ts";
import type { Journal } from "./journal.ts";
import { journalFault, type JournalCorruptError } from "./journal-faults.ts";
import { JournalHealth } from "./journal-health.ts";
import type { AgentProblem } from "./problem-file.ts";
import { silentLogger, type Logger } from "./log.ts";
import type { ScanReport } from "./scan.ts";
import type { PackedMarker } from "./sender.ts";
import type { BusyFileOptions } from "./busy-files.ts";
import { Backlog } from "./set-backlog.ts";
import { SetCapture } from "./set-capture.ts";
import type { CaptureRetryOptions } from "./capture-retry.ts";
import { SetLane, type SetContext } from "./set-context.ts";
import { SetOperations, type MarkerRequest, type QueuedMarker, type VerifyOptions } from "./set-operations.ts";
import { SetRecovery } from "./set-recovery.ts";
import { ApplierAccepts, refusedWholePack, type AnnouncementReader } from "./applier-accepts.ts";
import type { TargetFileLookup } from "./recovery-baseline.ts";
import type { PendingRecovery } from "./pending-recoveries.ts";
import { SetSender } from "./set-sender.ts";
import { OwnerHold, type OwnerLookup } from "./owner-hold.ts";
import type { SetSpec } from "./set-spec.ts";
import { SetSpoolRepair } from "./spool-folder.ts";
import { namePossibleLoss, WatchQueueOverflowError } from "./event-queue.ts";
import type { Transport } from "./transport/transport.ts";
import { watchSet, type SetWatcher } from "./watcher.ts";
import { StartInterruptedError, throwIfInterrupted } from "./interrupt.ts";
import { watchVolume } from "./volume.ts";
import { heldNow, type HeldBy } from "./held-wait.ts";
import { notReplicated } from "./not-replicated.ts";
import type { NotReplicated } from "./set-health.ts";
import { ROOT_CHECK_MS, RootWatch, type RootDeadline } from "./root-watch.ts";
import type { RootHold } from "./set-roots.ts";

export type { MarkerRequest, QueuedMarker, VerifyOptions } from "./set-operations.ts";
export { lingerBeforeSend } from "./set-sender.ts";

export interface AgentOptions {
  readonly sets: readonly SetSpec[];
  readonly journal: Journal;
  /** Wrapped with retries by the caller: a send that throws stops the sender loop until the next wake-up. */
  readonly transport: Transport;
  /** Reads the applier's status of a set; used to notice an out-of-sync set and resync it. */
  readonly targetStatus?: (set: string) => Promise<SetStatus | undefined>;
  /** Reads what the stack's applier announced it accepts (state/applier.json), for sets with no status saying so (applier-accepts.ts). */
  readonly applierAnnouncement?: AnnouncementReader;
  /** Background work (watchers, sender loops, status polling). Off in tests that step the agent by hand. */
  readonly monitorEnabled?: boolean;
  readonly statusPollMs?: number;
  /** Absolute paths the watcher ignores (the agent's own state dir, when inside a set). */
  readonly ignorePaths?: readonly string[];
  /** How inline content is compressed. @default "zstd" */
  readonly compression?: Compression;
  /**
   * Largest backlog of a set, in bytes of content. At the limit the set stops
   * journaling (the source is not copied into an unbounded journal) and is out
   * of sync; once the backlog drains below half, a catch-up scan journals
   * everything that changed meanwhile. @default 8 GiB
   */
  readonly journalLimitBytes?: number;
  /** A barrier scan of every set this often, behind the watcher. @default 15 minutes */
  readonly rescanMs?: number;
  /** Files at least this large that keep changing are coalesced: one unsent version at a time (busy-files.ts). @default 16 MiB */
  readonly coalesceBytes?: number;
  /** How coalesced files are paced: the next version waits for the target's rebuild of the last, unless the file went quiet (busy-files.ts). */
  readonly busyFiles?: BusyFileOptions;
  /** When a set is scanned again after a failed capture of the watcher's changes or a failed background scan (capture-retry.ts). @default 1 s, doubling to 5 minutes */
  readonly captureRetry?: CaptureRetryOptions;
  /** How often a set is scanned once its watcher failed (inotify watches exhausted). @default 30 s */
  readonly pollingScanMs?: number;
  /** How long changes arriving at an idle sender wait for more before they are sent (config `lingerMs`). @default 0 */
  readonly lingerMs?: number;
  /**
   * How a set that went out of sync on the target is brought back; the
   * runtime picks a mirror mode (owed: a recovery begun earlier and not
   * finished, run again as it began). @default a full mirror (resync)
   */
  readonly recover?: (set: string, reason: string, owed?: PendingRecovery, resyncPending?: boolean, compare?: () => Promise<void>) => Promise<void>;
  /** When an owed recovery that failed runs again (set-recovery.ts). @default 1 s, doubling to 5 minutes */
  readonly recoveryRetry?: CaptureRetryOptions;
  /** Reads the target's live file at a path: after a lost journal only what the target lacks is sent (recovery-baseline.ts). */
  readonly targetFile?: TargetFileLookup;
  /** Once the queue accepted a message holding markers (ONRECEIVE): the "task received" event. */
  readonly announceReceived?: (set: string, markers: readonly PackedMarker[]) => Promise<void>;
  /** The watcher; tests inject one that fails. @default a watch per folder (watcher.ts) */
  readonly watch?: typeof watchSet;
  /** The watcher of a volume set's image; tests inject a blind one. @default a watch on the file (volume.ts) */
  readonly watchVolume?: typeof watchVolume;
  /** The journal is corrupt: the agent cannot go on, and its owner stops the process (exit non-zero). */
  readonly onFatal?: (error: JournalCorruptError) => void;
  /** The disk holding the journal filled up (or has space again: null), for `tidemark status`. */
  readonly onJournalProblem?: (problem: AgentProblem | null) => void;
  readonly log?: Logger;
  /** The target's owner record of a set and this host's key id: a set whose record names another key is not sent (owner-hold.ts). */
  readonly owner?: { readonly hostKeyId: string; readonly lookup: OwnerLookup; readonly recheckMs?: number };
  /** How often each tree set's root is looked at (root-watch.ts): a missing, swapped or emptied root holds the set. @default 3 s */
  readonly rootCheckMs?: number;
  /** How long a look at a root may take before the set is held root-unresponsive (root-watch.ts). @default 10 s */
  readonly rootCheckTimeoutMs?: number;
  /** Arms a look's time limit (root-watch.ts); a test's stand-in fires it by hand. @default a timer */
  readonly rootCheckDeadline?: RootDeadline;
}

const DEFAULT_JOURNAL_LIMIT_BYTES = 8 * 1024 ** 3;
const DEFAULT_RESCAN_MS = 15 * 60_000;
const DEFAULT_COALESCE_BYTES = 16 * 1024 * 1024;
const DEFAULT_POLLING_SCAN_MS = 30_000;

function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

/** One set's parts, wired: capture feeds the journal, the sender drains it, recovery keeps it in the target's chain. */
class SetRunner {
  readonly spec: SetSpec;
  readonly lane = new SetLane();
  readonly capture: SetCapture;
  readonly operations: SetOperations;
  readonly recovery: SetRecovery;
  readonly sender: SetSender;
  readonly ownerHold: OwnerHold | undefined;
  /** What the set's applier reads: whole packs only once it said so. */
  readonly accepts: ApplierAccepts;
  /** The set's root, looked at before anything is journaled and every few seconds: a bad one holds the set. */
  readonly root: RootWatch;
  /** The watcher failed: the set is kept up to date by frequent scans. */
  degraded = false;

  constructor(spec: SetSpec, agent: { readonly options: AgentOptions; readonly journal: Journal; readonly log: Logger; readonly health: JournalHealth; resumeRoot(runner: SetRunner): void }) {
    const { options } = agent;
    this.spec = spec;
    const context: SetContext = {
      spec,
      journal: agent.journal,
      log: agent.log,
      health: agent.health,
      exclusive: (work) => this.lane.exclusive(work),
      wake: () => this.sender.wake(),
      checkRoot: () => this.root.check({ fresh: true }),
    };
    this.root = new RootWatch(context, () => agent.resumeRoot(this), {
      ...(options.rootCheckTimeoutMs !== undefined ? { timeoutMs: options.rootCheckTimeoutMs } : {}),
      ...(options.rootCheckDeadline ? { deadline: options.rootCheckDeadline } : {}),
    });
    const backlog = new Backlog(context, options.journalLimitBytes ?? DEFAULT_JOURNAL_LIMIT_BYTES);
    const owner = options.owner;
    this.ownerHold = owner ? new OwnerHold({ set: spec.name, hostKeyId: owner.hostKeyId, lookup: owner.lookup, log: agent.log, ...(owner.recheckMs !== undefined ? { recheckMs: owner.recheckMs } : {}) }) : undefined;
    this.capture = new SetCapture(context, backlog, options.coalesceBytes ?? DEFAULT_COALESCE_BYTES, options.busyFiles, options.captureRetry);
    // What operations journal (markers, verifications, resyncs, ...) someone waits on: it is sent without lingering.
    this.operations = new SetOperations({ ...context, wake: () => this.sender.hurry() }, this.capture);
    this.accepts = new ApplierAccepts(spec.name, agent.log, options.applierAnnouncement);
    this.recovery = new SetRecovery(context, this.operations, {
      ...(options.targetStatus ? { targetStatus: this.accepts.watch(options.targetStatus) } : {}),
      refusal: (status) => (refusedWholePack(status) ? "the applier does not read packs compressed as a whole (the stack was rolled back): messages sent with them were refused" : undefined),
      ...(options.recover ? { recover: options.recover } : {}),
      ...(options.targetFile ? { targetFile: options.targetFile } : {}),
      ...(options.recoveryRetry ? { retry: options.recoveryRetry } : {}),
      onTargetStatus: (status) => {
        this.capture.targetApplied(status.lastSeq);
        this.ownerHold?.refusedBy(status.refused).catch(() => undefined);
      },
    });
    const hold = this.ownerHold;
    const spool = new SetSpoolRepair(agent.journal, spec.name, () => this.capture.rescan(), (skipped) =>
      agent.log.error("not replicated until captured again: spooled content was deleted", { set: spec.name, records: skipped.map((record) => record.what), spoolDir: agent.journal.spoolDir }),
    );
    this.sender = new SetSender(context, {
      transport: spool.wrap(options.transport),
      ...(hold ? { held: () => hold.holds(), heldReason: () => hold.reason } : {}),
      ...(options.compression ? { compression: options.compression } : {}),
      wholePacks: () => this.accepts.wholePacks,
      ...(options.lingerMs !== undefined ? { lingerMs: options.lingerMs } : {}),
      ...(options.announceReceived ? { announceReceived: options.announceReceived } : {}),
      contentLost: () => spool.repairLost(),
      beforeSend: async () => {
        await spool.repair();
        await this.recovery.checkContinuity();
      },
      afterSend: async () => {
        if (backlog.drained()) await this.capture.rescan();
        await this.capture.captureWaiting();
      },
    });
  }
}

export class Agent {
  readonly options: AgentOptions;
  readonly journal: Journal;
  readonly log: Logger;
  /** A full disk pauses journaling until a probe write commits; a corrupt journal is fatal. */
  readonly health: JournalHealth;
  readonly #runners: Map<string, SetRunner>;
  readonly #watchers = new Set<SetWatcher>();
  /** Each set's watcher, to watch the root again once a held set's root is back (the old watch is on the folder that left). */
  readonly #watcherOf = new Map<SetRunner, SetWatcher>();
  #rootTimer: NodeJS.Timeout | undefined;
  readonly #rescanTimers = new Map<SetRunner, NodeJS.Timeout>();
  #loops: Promise<void>[] = [];
  #statusTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: AgentOptions) {
    this.options = Object.freeze({ monitorEnabled: true, statusPollMs: 5_000, ...options });
    this.journal = options.journal;
    this.log = options.log ?? silentLogger;
    this.health = new JournalHealth({
      journal: this.journal,
      log: this.log,
      monitorEnabled: this.options.monitorEnabled ?? true,
      onResumed: () => this.#catchUp(),
      onCorrupt: (error) => this.options.onFatal?.(error),
      ...(options.onJournalProblem ? { onProblem: options.onJournalProblem } : {}),
    });
    this.#runners = new Map(options.sets.map((spec) => [spec.name, new SetRunner(spec, this)]));
  }

  /** After a full disk: a scan of every set journals what changed while nothing could be. */
  async #catchUp(): Promise<void> {
    for (const runner of this.#runners.values()) {
      await runner.capture.rescan();
      runner.sender.wake();
    }
  }

  /** Tries a journal write now (a full disk's probe): true when journaling works, after the catch-up scan. */
  probeJournal(): Promise<boolean> {
    return this.health.probe();
  }

  #runner(set: string): SetRunner {
    const runner = this.#runners.get(set);
    if (!runner) throw new Error(`no set named "${set}" in this agent's config`);
    return runner;
  }

  /** Starts watching, scans every set (the initial mirror, or what changed while the agent was down) and starts sending. */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.options.monitorEnabled) this.#watchRoots();
    for (const runner of this.#runners.values()) {
      throwIfInterrupted(signal, "starting");
      if (this.options.monitorEnabled) {
        this.#watch(runner);
        this.#loops.push(runner.sender.sendLoop(() => this.#stopped));
        this.#scheduleRescan(runner);
      }
      // Before anything of the set is journaled: a root that is missing, another folder or empty holds the set (its
      // records already journaled still go); it resumes once the root is back (or accepted), with a scan then.
      let hold: RootHold | undefined;
      try {
        this.journal.sets.register(runner.spec.name);
        hold = await runner.root.check();
      } catch (error) {
        if (this.health.handle(error) && this.health.full) continue;
        throw journalFault(error, this.journal.path);
      }
      if (hold) continue;
      // Before the scan journals anything: a new generation's resync goes ahead of it.
      await runner.recovery.checkContinuity(signal).catch((error: unknown) =>
        this.log.warn("target status not readable; the journal's continuity is checked before the first send", { set: runner.spec.name, error: String(error) }),
      );
      let report: ScanReport;
      try {
        report = await runner.capture.scan(signal);
      } catch (error) {
        if (error instanceof StartInterruptedError) throw error;
        // A full disk at start: the agent waits for space and catches up then, like a supervisor would want.
        if (this.health.handle(error) && this.health.full) continue;
        throw journalFault(error, this.journal.path);
      }
      this.log.info("set scanned", { set: runner.spec.name, entries: report.entries, journaled: report.changes });
    }
    if (this.options.monitorEnabled && this.options.targetStatus) this.#pollStatus();
  }

  /**
   * Every few seconds, each set's root (root-watch.ts): holds a set whose root went bad or does not answer, resumes
   * one whose root is back. Nothing here waits on a look, and a root whose look has not answered is not looked at again.
   */
  #watchRoots(): void {
    this.#rootTimer = setInterval(() => {
      for (const runner of this.#runners.values()) {
        runner.root.check().catch((error: unknown) => {
          if (!this.health.handle(error)) this.log.warn("could not check the set's root", { set: runner.spec.name, error: String(error) });
        });
      }
    }, this.options.rootCheckMs ?? ROOT_CHECK_MS);
    this.#rootTimer.unref();
  }

  /**
   * A held set's root is back (its identity, or accepted by an operator): the root is watched anew, the continuity
   * check and any recovery owed go on, and a normal scan journals what differs (nothing is sent again that the index
   * holds, and only what is really gone is deleted).
   */
  resumeRoot(runner: SetRunner): void {
    if (this.#stopped) return;
    const set = runner.spec.name;
    if (this.options.monitorEnabled && !runner.degraded) this.#watch(runner);
    const failed = (error: unknown) => this.log.warn("the set's resume after its root came back failed; a later scan catches up", { set, error: String(error) });
    runner.recovery
      .checkContinuity()
      .then(() => runner.recovery.resumeOwed(), () => undefined)
      .then(() => runner.capture.scan())
      .then(() => runner.sender.wake())
      .catch(failed);
  }

  /**
   * Watches the set's root anew, closing the set's watcher before it: the root timer can resume a held set (a watch)
   * while start() has not reached it yet, and start() then watches it too.
   */
  #watch(runner: SetRunner): void {
    const set = runner.spec.name;
    const old = this.#watcherOf.get(runner);
    if (old) {
      this.#watchers.delete(old);
      old.close().catch(() => undefined);
    }
    const watch = runner.spec.volume ? (this.options.watchVolume ?? watchVolume) : (this.options.watch ?? watchSet);
    const watcher = watch(
      runner.spec,
      {
        hint: (path) => runner.capture.hint(path),
        folderReplaced: (path) => runner.capture.hintReplacedFolder(path),
        error: (error) => {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "ENOSPC" || code === "EMFILE" || code === "ENFILE") {
            // The watch is incomplete from now on: scans take over, often enough to keep up.
            const problem = `the watcher ran out of ${code === "ENOSPC" ? "inotify watches" : "file descriptors"}; scanning every ${formatDuration(this.#pollingScanMs)} instead (raise fs.inotify.max_user_watches, e.g. sysctl fs.inotify.max_user_watches=1048576, then restart the agent)`;
            this.log.error(problem, { set, error: error.message });
            this.journal.sets.setWatcherProblem(set, problem);
            runner.degraded = true;
            this.#watchers.delete(watcher);
            watcher.close().catch(() => undefined);
            this.#scheduleRescan(runner);
          } else {
            this.log.warn("watcher error; rescanning the set", { set, error: error.message });
            if (error instanceof WatchQueueOverflowError) namePossibleLoss(this.journal, set, error);
          }
          void runner.capture.rescan();
        },
      },
      this.options.ignorePaths,
    );
    this.#watchers.add(watcher);
    this.#watcherOf.set(runner, watcher);
    this.journal.sets.setWatcherProblem(set, null);
  }

  get #pollingScanMs(): number {
    return this.options.pollingScanMs ?? DEFAULT_POLLING_SCAN_MS;
  }

  /** Barrier scans on a timer: a safety net behind the watcher, or the only source of changes once it failed. */
  #scheduleRescan(runner: SetRunner): void {
    clearTimeout(this.#rescanTimers.get(runner));
    if (this.#stopped) return;
    const volume = runner.spec.volume;
    // A volume is read on its own interval: a device's writes raise no watcher events.
    const every = volume ? volume.scanMs : runner.degraded ? this.#pollingScanMs : (this.options.rescanMs ?? DEFAULT_RESCAN_MS);
    const timer = setTimeout(async () => {
      await runner.capture.rescan();
      await this.#recheckOwner(runner);
      this.#scheduleRescan(runner);
    }, every);
    timer.unref();
    this.#rescanTimers.set(runner, timer);
  }

  /** A held set's owner record is read again at each rescan; an adoption found resumes its sends at once. */
  async #recheckOwner(runner: SetRunner): Promise<void> {
    if (!runner.ownerHold?.held) return;
    await runner.ownerHold.recheck();
    if (!runner.ownerHold.held) runner.sender.wake();
  }

  #pollStatus(): void {
    this.#statusTimer = setTimeout(async () => {
      for (const runner of this.#runners.values()) {
        try {
          await runner.recovery.checkTarget();
        } catch (error) {
          this.log.debug("target status not readable", { set: runner.spec.name, error: String(error) });
        }
      }
      if (!this.#stopped) this.#pollStatus();
    }, this.options.statusPollMs);
  }

  scan(set: string): Promise<ScanReport> {
    return this.#runner(set).capture.scan();
  }

  /** Captures pending watcher hints now instead of after the short gathering delay. */
  processHints(set: string): Promise<number> {
    return this.#runner(set).capture.processHints();
  }

  hint(set: string, path: string): void {
    this.#runner(set).capture.hint(path);
  }

  checkTarget(set: string): Promise<void> {
    return this.#runner(set).recovery.checkTarget();
  }

  /**
   * Looks at the set's root now (the timer's check): its hold, or undefined; a root back resumes the set (a scan
   * follows). Settles within the look's time limit; while a look has not answered, no new one starts.
   */
  checkRoot(set: string): Promise<RootHold | undefined> {
    return this.#runner(set).root.check();
  }

  /** Checks (once) that the set's journal continues the target's chain, beginning a new generation when not. */
  checkContinuity(set: string): Promise<void> {
    return this.#runner(set).recovery.checkContinuity();
  }

  drain(set: string): Promise<number> {
    return this.#runner(set).sender.drain();
  }

  /** True while the set's sends are held: the target's owner record names another key than this host's. */
  sendsHeld(set: string): boolean {
    return this.#runner(set).ownerHold?.held ?? false;
  }

  /** Who holds the set's sends (another key owns it), undefined while they go; the owner record is read again when due. */
  sendsHeldBy(set: string): Promise<HeldBy | undefined> {
    const hold = this.#runner(set).ownerHold;
    return hold ? heldNow(hold) : Promise.resolve(undefined);
  }

  /** True while the set's changes wait for more to share their message (lingerMs). */
  isLingering(set: string): boolean {
    return this.#runner(set).sender.lingering;
  }

  /** Journals a verification of a set; its report appears on the target once the applier reaches it. */
  journalVerify(set: string, options: VerifyOptions): Promise<{ id: string; seq: number; scan: ScanReport }> {
    return this.#runner(set).operations.journalVerify(options);
  }

  /** Journals a task marker behind a barrier scan of the set. */
  insertMarker(set: string, request: MarkerRequest): Promise<QueuedMarker> {
    return this.#runner(set).operations.insertMarker(request);
  }

  journalPrune(set: string, keep: number): Promise<{ id: string; seq: number }> {
    return this.#runner(set).operations.journalPrune(keep);
  }

  /** Journals the source's version of what a verification found missing or different. */
  repair(set: string, report: VerifyReport): Promise<number> {
    return this.#runner(set).operations.repair(report);
  }

  restartChain(set: string, reason: string): Promise<number> {
    return this.#runner(set).operations.restartChain(reason);
  }

  /** Journals a drill's report (its seq); the target writes it when it reaches it. */
  journalDrill(set: string, report: DrillReport): Promise<number> {
    return this.#runner(set).operations.journalDrill(report);
  }

  fullMirror(set: string, reason: string, onProgress?: (report: Readonly<ScanReport>) => void): Promise<ScanReport> {
    return this.#runner(set).operations.fullMirror(reason, onProgress);
  }

  /** What the set holds and does not replicate (refused by the target, or skipped), as status names it. */
  notReplicated(set: string): NotReplicated[] {
    return notReplicated(this.journal, this.#runner(set).spec);
  }

  /** True when the set is a block volume rather than a tree. */
  isVolume(set: string): boolean {
    return this.#runner(set).spec.volume !== undefined;
  }

  /** Names of the sets this agent replicates. */
  get sets(): string[] {
    return [...this.#runners.keys()];
  }

  /** Stops watching and sending; journaled records stay for the next start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    clearTimeout(this.#statusTimer);
    clearInterval(this.#rootTimer);
    this.health.stop();
    for (const runner of this.#runners.values()) {
      // A look at a root that does not answer (a hung network file system) is waited on no longer.
      runner.root.stop();
      runner.capture.cancelHints();
      runner.recovery.stop();
      runner.sender.wake();
    }
    for (const timer of this.#rescanTimers.values()) clearTimeout(timer);
    await Promise.all([...this.#watchers].map((w) => w.close()));
    await Promise.allSettled(this.#loops);
    // Let captures already running finish before the journal closes.
    for (const runner of this.#runners.values()) await runner.lane.exclusive(async () => undefined);
  }
}
