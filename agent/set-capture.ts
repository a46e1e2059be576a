// How one set's changes reach its journal: the watcher's hints gathered for a
// moment and captured in one transaction (a vanished large file that
// reappears under another name, also inside a folder moved within the set,
// becomes a rename: vanished-entries.ts), barrier scans of the whole
// set, and large busy files held back until their previous version is sent
// and paced (busy-files.ts), named in the journal while they wait
// (held-files.ts).

import { rm } from "node:fs/promises";
import { join } from "node:path";
import { BusyFiles, type BusyFileOptions } from "./busy-files.ts";
import { capture, deletesFor, type CaptureResult } from "./capture.ts";
import { CaptureRetry, type CaptureRetryOptions } from "./capture-retry.ts";
import { captureFailed, HeldFileRecord, namedScan } from "./held-files.ts";
import { noteSpecialFile, skippedForName } from "./hinted-skips.ts";
import { unreadableProblem } from "./skipped-names.ts";
import { SkippedLog } from "./skipped-log.ts";
import { changeBytes, type Change } from "./journal.ts";
import { barrierScan, type ScanOptions, type ScanReport } from "./scan.ts";
import { scanWakes } from "./scan-wake.ts";
import type { Backlog } from "./set-backlog.ts";
import { assertRootAnswers, type SetContext } from "./set-context.ts";
import { VanishedEntries } from "./vanished-entries.ts";
import { RootHeldError } from "./set-roots.ts";
import { volumeScan } from "./volume.ts";

/** How long hints gather before they are captured: a burst of events becomes one transaction. */
const HINT_DELAY_MS = 15;

export class SetCapture {
  readonly #context: SetContext;
  readonly #backlog: Backlog;
  readonly #busy: BusyFiles;
  /** The busy files held back, as `tidemark status` reads them. */
  readonly #held: HeldFileRecord;
  /** Busy files the pacing released, until their capture ran: still held. */
  readonly #capturing = new Set<string>();
  readonly #now: () => number;
  /** Files at least this large are named as held while their capture reads them (busy files' threshold too). */
  readonly #largeBytes: number;
  /**
   * Paths that kept changing while their last capture of the watcher's hints read them: read once at the next (capture.ts
   * readOnce), since each re-read holds the set's lane, and every capture of the set waits behind it. Forgotten when
   * the path, or a folder above it, is deleted or renamed away (#journaled).
   */
  readonly #changingWhileRead = new Set<string>();
  /** Paths not replicated that the log already named: not again at every rescan. */
  readonly #skippedLog = new SkippedLog();
  #hints = new Set<string>();
  /** Hinted folders made or replaced at a path the index may hold another folder's entries under: scanned whole. */
  #replacedFolders = new Set<string>();
  #hintTimer: NodeJS.Timeout | undefined;
  /** Wakes captureWaiting when the next busy file is due. */
  #dueTimer: NodeJS.Timeout | undefined;
  /** When #dueTimer fires: a path due earlier (its earlier version applied meanwhile) re-arms it. */
  #dueAt = 0;
  /** The timer's captureWaiting, put off until the loop's I/O ran. */
  #dueImmediate: NodeJS.Immediate | undefined;
  /** The catch-up scan after a failed capture or background scan: within seconds, not at the next rescan. */
  readonly #retry: CaptureRetry;
  /** The rescan queued on the lane and not begun yet. */
  #queuedRescan: Promise<void> | undefined;
  /** Whether the first scan read what a previous run left unsent (#loadLeftUnsent). */
  #leftUnsentLoaded = false;

  constructor(context: SetContext, backlog: Backlog, coalesceBytes: number, busy: BusyFileOptions = {}, retry: CaptureRetryOptions = {}) {
    this.#context = context;
    this.#backlog = backlog;
    this.#busy = new BusyFiles(coalesceBytes, busy);
    this.#largeBytes = coalesceBytes;
    this.#now = busy.now ?? Date.now;
    this.#held = new HeldFileRecord(context.journal, context.spec.name, this.#now);
    this.#retry = new CaptureRetry(() => this.rescan(), retry);
  }

  /**
   * Large versions a previous run left unsent, read at the first scan (the agent's start scan): a capture of such a
   * file waits behind them, as behind its own. Not in the constructor: a journal read there escaped the start's
   * handling of a corrupt journal (JournalCorruptError, naming the file and the remedy).
   */
  #loadLeftUnsent(sentSeq: number): void {
    if (this.#leftUnsentLoaded) return;
    this.#leftUnsentLoaded = true;
    const { journal, spec } = this.#context;
    const left = journal.largePuts(spec.name, sentSeq, this.#largeBytes);
    this.#busy.journaled(left.map((record) => record.change), left.map((record) => record.seq));
  }

  /** What changed in the set since the index: a scan of the tree, or a read of the volume (all of it when `full`). Run inside the set's lane. */
  barrier(options: Pick<ScanOptions, "onProgress" | "shouldStop" | "defer" | "signal" | "onChangingWhileRead"> & { full?: boolean; begun?: () => void } = {}): Promise<ScanReport> {
    const { journal, spec } = this.#context;
    const { full = false, defer, begun, ...rest } = options;
    // Named in the journal while it runs: the backlog may drain behind it, and `tidemark status` must not say "in sync" then.
    const report = namedScan(journal, spec.name, this.#now, () => {
      if (spec.volume) return volumeScan(journal, spec, { full, ...rest });
      // Files of at least a block that moved within the set (found gone at one name, new at another) travel as renames.
      const moved = new VanishedEntries();
      const moves = { vanish: (path: string) => moved.vanish(journal, spec.name, path), renames: (changes: Change[]) => this.#asRenames(changes, moved, new Set(), new Set()) };
      return barrierScan(journal, spec, { ...rest, ...moves, ...(defer ? { defer } : {}), beforeAppend: () => this.#rootAnswers(), onJournaled: (changes, seqs) => this.#journaled(changes, seqs), onChunkJournaled: scanWakes(journal, spec.name, () => this.#context.wake()) });
    }, begun ? { begun } : {});
    // A whole-set scan that finished journaled whatever a failed capture left out: no catch-up scan is due then.
    return report.then((done) => {
      if (done.stopped !== true) this.#retry.succeeded();
      return done;
    });
  }

  /** A barrier scan within the journal limit; wakes the sender when it journaled anything. `begun` hears when it leaves the lane's queue. */
  async scan(signal?: AbortSignal, begun?: () => void): Promise<ScanReport> {
    const { journal, spec, health, log } = this.#context;
    // Nothing can be journaled: the catch-up scan after the disk has space again does this one's work.
    if (health.full) return { entries: 0, changes: 0, bytes: 0, skipped: [], stopped: true };
    const report = await this.#context.exclusive(async () => {
      begun?.();
      // A held set's root is no source (an unmount reads as every file deleted): the scan when it is back does this
      // one's work. A root found bad now holds the set (a missing root would scan as nothing at all).
      if ((await this.#context.checkRoot()) || journal.roots.held(spec.name)) return { entries: 0, changes: 0, bytes: 0, skipped: [], stopped: true };
      const { sentSeq } = journal.sets.counters(spec.name);
      this.#loadLeftUnsent(sentSeq);
      // The catch-up scan of a drained journal: the full mark goes only once this scan is named.
      return this.barrier({ shouldStop: (unjournaled, next) => this.#backlog.full(unjournaled, next), defer: (path) => this.#busy.defer(path, sentSeq), begun: () => this.#backlog.catchUpBegins(), ...(signal ? { signal } : {}) });
    });
    for (const skipped of this.#skippedLog.scanned(report.skipped, report.stopped !== true)) log.warn("not replicated", { set: spec.name, path: skipped.path, reason: skipped.reason });
    // A root an operator accepted (accept-root) is scanned whole: from now on that root emptied is held again.
    if (report.stopped !== true && journal.roots.of(spec.name)?.accepted === true) journal.atomically(() => journal.roots.settle(spec.name));
    if (report.changes > 0) this.#context.wake();
    this.#wakeWhenDue();
    return report;
  }

  /**
   * A scan behind the watcher (its error, the periodic rescan, a catch-up): a failure is logged, and scanned again soon.
   * One still waiting in the lane's queue serves every rescan asked for meanwhile (it reads the whole set once it
   * begins): a burst of watcher errors on a busy tree queues one scan, not one each.
   */
  rescan(): Promise<void> {
    if (this.#queuedRescan) return this.#queuedRescan;
    const queued: Promise<void> = this.#rescan(() => {
      if (this.#queuedRescan === queued) this.#queuedRescan = undefined;
    });
    this.#queuedRescan = queued;
    return queued;
  }

  async #rescan(begun: () => void): Promise<void> {
    try {
      await this.scan(undefined, begun);
    } catch (error) {
      const { health, spec, log } = this.#context;
      if (health.handle(error)) return;
      // The root went bad under the scan: the set is held, and scanned again once its root is back.
      if (error instanceof RootHeldError) {
        log.warn(error.message, { set: spec.name });
        return;
      }
      // namedScan named it in the journal: status says scan-failed until a whole-set scan succeeds.
      log.error("scan failed; scanning the set again soon", { set: spec.name, error: String(error), retryMs: this.#retry.failed() });
    } finally {
      // Also when it never reached the lane (a full disk).
      begun();
    }
  }

  hint(path: string): void {
    this.#busy.wrote(path);
    this.#hints.add(path);
    this.#hintTimer ??= setTimeout(() => {
      this.#hintTimer = undefined;
      this.processHints().catch((error: unknown) => this.#failed(error));
    }, HINT_DELAY_MS);
  }

  /** A folder made, moved in or replaced at `path`: its capture compares everything the index holds below it with what is there. */
  hintReplacedFolder(path: string): void {
    this.#replacedFolders.add(path);
    this.hint(path);
  }

  cancelHints(): void {
    clearTimeout(this.#hintTimer);
    this.#hintTimer = undefined;
    clearTimeout(this.#dueTimer);
    this.#dueTimer = undefined;
    clearImmediate(this.#dueImmediate);
    this.#dueImmediate = undefined;
    this.#retry.stop();
  }

  /** Captures the large files that waited for their previous version to be sent (and paced), once it is. */
  async captureWaiting(): Promise<void> {
    const { journal, spec } = this.#context;
    const ready = this.#busy.ready(journal.sets.counters(spec.name).sentSeq);
    if (ready.length > 0) {
      for (const path of ready) {
        this.#hints.add(path);
        this.#capturing.add(path);
      }
      try {
        await this.processHints();
      } catch (error) {
        // Not thrown to a send's afterSend, which would only log it: these paths left the busy files' waiting list.
        this.#failed(error);
      } finally {
        for (const path of ready) this.#capturing.delete(path);
      }
    }
    this.#wakeWhenDue();
  }

  /** The target applied up to seq: a busy file whose last version it rebuilt may be captured again. */
  targetApplied(seq: number): void {
    this.#busy.applied(seq);
    this.captureWaiting().catch((error: unknown) => this.#failed(error));
  }

  /**
   * A capture of hinted or waiting paths failed: nothing of it reached the index, so a whole-set scan (after a full
   * disk: the catch-up scan) finds it again, within seconds (CaptureRetry); until then status names it as a failed
   * scan, never in sync.
   */
  #failed(error: unknown): void {
    const { health, journal, spec, log } = this.#context;
    if (health.handle(error)) return;
    // The root went bad under the capture (an unmount's events): the set is held; nothing of the batch was journaled.
    if (error instanceof RootHeldError) {
      log.warn(error.message, { set: spec.name });
      return;
    }
    log.error("capture failed; a scan of the set catches up", { set: spec.name, error: String(error), retryMs: this.#retry.failed() });
    try {
      captureFailed(journal, spec.name, this.#now, error);
    } catch {
      // The journal cannot record it either (status names a journal it cannot use).
    }
  }

  /** A busy file waits for its pace or quiet moment: the journal names it, and captureWaiting runs then (a send runs it too). */
  #wakeWhenDue(): void {
    const { journal, spec } = this.#context;
    const { sentSeq } = journal.sets.counters(spec.name);
    this.#held.record(this.#busy.held(sentSeq), this.#capturing);
    const due = this.#busy.nextDueMs(sentSeq);
    if (due === undefined || (this.#dueTimer && this.#dueAt <= this.#now() + due)) return;
    clearTimeout(this.#dueTimer);
    this.#dueAt = this.#now() + due;
    this.#dueTimer = setTimeout(() => {
      this.#dueTimer = undefined;
      // After the loop's I/O: the watcher's events that came while the loop was busy are seen before "quiet" is.
      this.#dueImmediate = setImmediate(() => {
        this.#dueImmediate = undefined;
        this.captureWaiting().catch((error: unknown) => this.#failed(error));
      });
    }, due);
    this.#dueTimer.unref();
  }

  /** Captures every hinted path (and its parent directory, whose mtime moved); a volume's hint reads the volume. */
  processHints(): Promise<number> {
    // Called directly (not by the hints' timer): what was gathered is captured now, not again by the timer, which would
    // take hints added meanwhile from under this call.
    clearTimeout(this.#hintTimer);
    this.#hintTimer = undefined;
    if (this.#context.spec.volume) {
      this.#hints.clear();
      return this.scan().then((report) => report.changes);
    }
    return this.#context.exclusive(() => this.#captureHinted());
  }

  async #captureHinted(): Promise<number> {
    const { journal, spec, health } = this.#context;
    if (journal.roots.held(spec.name)) {
      // Not journaled from a bad root: the scan when the root is back finds what really changed.
      this.#hints.clear();
      this.#replacedFolders.clear();
      return 0;
    }
    if (health.full || this.#backlog.full()) {
      // Not journaled: the index still holds the old state, so the catch-up scan finds these changes.
      this.#hints.clear();
      return 0;
    }
    const paths = new Set<string>();
    for (const path of this.#hints) {
      paths.add(path);
      const cut = path.lastIndexOf("/");
      if (cut > 0) paths.add(path.slice(0, cut));
    }
    this.#hints.clear();
    const replaced = this.#replacedFolders;
    this.#replacedFolders = new Set();
    const sorted = [...paths].sort();
    // Large files (also inside folders) that are gone from the source: if one reappears under another name, it moved.
    const moved = await VanishedEntries.of(journal, spec, sorted);
    let journaled = 0;
    // The batch is journaled in one transaction (one fsync), not one per file: under a burst of
    // writes the commits, not the reads, would set the pace.
    const pending: Change[] = [];
    let pendingBytes = 0;
    const deleted = new Set<string>();
    // Other names of hard-linked files captured with the name the watcher reported (capture.ts otherNames).
    const otherNames = new Set<string>();
    // Sources of renames not journaled yet: the index still holds them under their old names.
    const renamed = new Set<string>();
    const asRenames = (changes: Change[]) => this.#asRenames(changes, moved, deleted, renamed);
    const flush = async () => {
      if (pending.length > 0) await this.#rootAnswers();
      this.#journaled(pending, journal.append(spec.name, pending));
      journaled += pending.length;
      pending.length = 0;
      pendingBytes = 0;
    };
    const { sentSeq } = journal.sets.counters(spec.name);
    const shouldStop = (unjournaled: number, next = 0) => this.#backlog.full(unjournaled, next);
    let stopped = false;
    // Parents before children, so a new directory is journaled before what it holds.
    for (const path of sorted) {
      // A vanished folder is deleted after the batch, once its large files that reappeared are renamed.
      if (moved.has(path) || moved.inFolder(path) || this.#busy.defer(path, sentSeq)) continue;
      if (skippedForName(journal, spec, path)) continue;
      const known = journal.index.entry(spec.name, path);
      // Reading a large file (again and again while it keeps changing) takes long: the journal names it meanwhile, so
      // status does not say in sync while the source holds a change not journaled yet. Known large, it is named at
      // once; new or grown large, once the capture's own stat shows its size.
      let named = false;
      const name = () => {
        if (named || this.#capturing.has(path)) return;
        named = true;
        this.#capturing.add(path);
        this.#held.record(this.#busy.held(sentSeq), this.#capturing);
      };
      if (known?.kind === "file" && known.size >= this.#largeBytes) name();
      let result: CaptureResult;
      try {
        let changing = false;
        result = await capture(journal, spec, path, {
          beforeRead: (size) => {
            if (size >= this.#largeBytes) name();
          },
          onChangingWhileRead: () => {
            changing = true;
          },
          readOnce: this.#changingWhileRead.has(path),
          otherNames,
        });
        if (changing) this.#changingWhileRead.add(path);
        else this.#changingWhileRead.delete(path);
      } catch (error) {
        // A file the agent may not read is named (its last good version stays), and the rest of the batch goes on.
        const reason = unreadableProblem(error);
        if (reason === undefined) throw error;
        journal.skippedNames.record(spec.name, path, [{ path, reason }], false);
        if (this.#skippedLog.noted({ path, reason })) this.#context.log.warn("not replicated", { set: spec.name, path, reason });
        continue;
      } finally {
        // Journaled (or held back by the busy files) once the batch ends, which names what is held then.
        if (named) this.#capturing.delete(path);
      }
      journal.skippedNames.captured(spec.name, path);
      this.#skippedLog.captured(path);
      if (!result.isDirectory && result.changes.every((change) => change.op === "delete")) await noteSpecialFile(journal, spec, path);
      if (result.isDirectory && (!known || replaced.has(path))) {
        // A directory new to the index: its contents may predate the watch on it. One replaced: the index's entries
        // below it may be the old folder's, which the scan deletes.
        await flush();
        // Named like a whole-set scan: a large tree moved in is journaled in steps the sender drains behind.
        const report = await namedScan(
          journal,
          spec.name,
          this.#now,
          () => barrierScan(journal, spec, { from: path, shouldStop, renames: asRenames, beforeAppend: () => this.#rootAnswers(), onJournaled: (changes, seqs) => this.#journaled(changes, seqs) }),
          { folder: path },
        );
        journaled += report.changes;
        if (report.stopped) {
          stopped = true;
          break;
        }
        continue;
      }
      const changes = await asRenames(result.changes);
      const bytes = changes.reduce((sum, change) => sum + changeBytes(change), 0);
      if (bytes > 0 && shouldStop(pendingBytes, bytes)) {
        // Not journaled (the index still holds the old state): the catch-up scan after the backlog drains finds it.
        await Promise.all(changes.map((change) => change.op === "put" && "spool" in change.content && rm(join(journal.spoolDir, change.content.spool), { force: true })));
        stopped = true;
        break;
      }
      for (const change of changes) if (change.op === "delete") deleted.add(change.path);
      pending.push(...changes);
      pendingBytes += bytes;
    }
    // What vanished and did not reappear was deleted. Not once the batch stopped at the limit: what it did not reach
    // may be what vanished, so the index keeps the vanished entries and the catch-up scan finds them again (`vanish`).
    for (const path of stopped ? [] : moved.paths()) {
      if (!deleted.has(path) && !moved.isBelowFolder(path)) pending.push(...(await capture(journal, spec, path)).changes);
    }
    for (const folder of stopped ? [] : moved.folders) {
      for (const change of deletesFor(journal, spec.name, folder)) if (change.op === "delete" && !renamed.has(change.path) && !deleted.has(change.path)) pending.push(change);
    }
    await flush();
    if (journaled > 0) this.#context.wake();
    this.#wakeWhenDue();
    return journaled;
  }

  /**
   * Right before a batch is journaled, the root is looked at again (within its time limit): an unmount under a scan
   * or a capture (read as every file deleted) holds the set, and RootHeldError keeps the batch out of the journal.
   */
  #rootAnswers(): Promise<void> {
    return assertRootAnswers(this.#context);
  }

  /**
   * Changes journaled: the busy files hear of them, and a path deleted or renamed away (itself or a folder above it)
   * is no longer one that kept changing while read; a file made there later starts afresh. So does one renamed onto
   * it (a whole-set scan's rename: no hinted capture of the path decided its mark).
   */
  #journaled(changes: readonly Change[], seqs: readonly number[]): void {
    this.#busy.journaled(changes, seqs);
    if (this.#changingWhileRead.size === 0) return;
    for (const change of changes) {
      const gone = change.op === "delete" ? [change.path] : change.op === "rename" ? [change.from, change.to] : [];
      for (const path of this.#changingWhileRead) if (gone.some((at) => path === at || path.startsWith(`${at}/`))) this.#changingWhileRead.delete(path);
    }
  }

  /** A put of a new file with the content, mode and mtime of a vanished one becomes a rename of it. */
  async #asRenames(changes: Change[], vanished: VanishedEntries, deleted: ReadonlySet<string>, renamed: Set<string>): Promise<Change[]> {
    if (vanished.size === 0) return changes;
    const { journal, spec } = this.#context;
    // Not already deleted (with a folder removed earlier in this batch).
    const usable = (entry: { path: string }) => !deleted.has(entry.path) && journal.index.entry(spec.name, entry.path) !== undefined;
    const out: Change[] = [];
    for (const change of changes) {
      const from = change.op === "put" && !change.delta ? vanished.take(change, usable) : undefined;
      if (change.op !== "put" || !from) {
        out.push(change);
        continue;
      }
      renamed.add(from.path);
      if ("spool" in change.content) await rm(join(journal.spoolDir, change.content.spool), { force: true });
      out.push({ op: "rename", from: from.path, to: change.path });
    }
    return out;
  }
}
