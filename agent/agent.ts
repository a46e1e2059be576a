// The agent: for each set, a barrier scan at start, then the watcher's hints
// captured into the journal, a sender draining the journal into the queue,
// and a watch on the target's status that resyncs a set gone out of sync.
// With monitorEnabled=false nothing runs in the background: tests step it.

import { lstat, rm } from "node:fs/promises";
import { join } from "node:path";
import { randomUUID } from "node:crypto";
import type { OrphanPolicy, SetStatus, VerifyReport } from "../contract/layout.ts";
import { BLOCK_SIZE, type Compression } from "../contract/wire.ts";
import { blockRepair, capture } from "./capture.ts";
import { changeBytes, type Change, type IndexEntry, type Journal } from "./journal.ts";
import { journalFault, type JournalCorruptError } from "./journal-faults.ts";
import { JournalHealth } from "./journal-health.ts";
import type { AgentProblem } from "./problem-file.ts";
import { silentLogger, type Logger } from "./log.ts";
import { writeManifest } from "./manifest.ts";
import { barrierScan, type ScanOptions, type ScanReport } from "./scan.ts";
import { BusyFiles } from "./busy-files.ts";
import { markerDigest } from "./marker-digest.ts";
import { PackedAhead, sendNext, type PackedMarker } from "./sender.ts";
import { newTaskId, type TaskFields } from "../contract/tasks.ts";
import type { DrillReport } from "../contract/drills.ts";
import { describeHook, hookSucceeded, runHook, type HookResult } from "./hooks.ts";
import type { SetSpec } from "./set-spec.ts";
import type { Transport } from "./transport/transport.ts";
import { watchSet, type SetWatcher } from "./watcher.ts";
import { volumeScan, VolumeError, watchVolume } from "./volume.ts";
import { awaitingGeneration, continuityBreak } from "./continuity.ts";

export interface VerifyOptions {
  /** Hash every source file and have the target hash every object (a checksum mirror). */
  readonly deep: boolean;
  readonly orphans: OrphanPolicy;
  readonly onProgress?: (report: Readonly<ScanReport>) => void;
}

export interface MarkerRequest {
  readonly fields: TaskFields;
  /** @default a new time-ordered id */
  readonly id?: string;
  /** Run by the agent when the marker is in the journal (ONQUEUE). */
  readonly onQueue?: string;
  /** Run by the agent just before the message holding the marker is sent (ONTRANSMIT). */
  readonly onTransmit?: string;
  readonly onProgress?: (report: Readonly<ScanReport>) => void;
}

export interface QueuedMarker {
  readonly id: string;
  readonly seq: number;
  /** The journal generation the marker belongs to: the target's seqs count only in it. */
  readonly generation: string;
  /** What the barrier scan journaled ahead of the marker. */
  readonly scan: ScanReport;
  readonly onQueue?: HookResult;
}

export interface AgentOptions {
  readonly sets: readonly SetSpec[];
  readonly journal: Journal;
  /** Wrapped with retries by the caller: a send that throws stops the sender loop until the next wake-up. */
  readonly transport: Transport;
  /** Reads the applier's status of a set; used to notice an out-of-sync set and resync it. */
  readonly targetStatus?: (set: string) => Promise<SetStatus | undefined>;
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
  /** How often a set is scanned once its watcher failed (inotify watches exhausted). @default 30 s */
  readonly pollingScanMs?: number;
  /**
   * How a set that went out of sync on the target is brought back; the
   * runtime picks a mirror mode. @default a full mirror (resync)
   */
  readonly recover?: (set: string, reason: string) => Promise<void>;
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
}

/** How long hints gather before they are captured: a burst of events becomes one transaction. */
const HINT_DELAY_MS = 15;
const IDLE_WAKE_MS = 1_000;
const DEFAULT_JOURNAL_LIMIT_BYTES = 8 * 1024 ** 3;
const DEFAULT_RESCAN_MS = 15 * 60_000;
const DEFAULT_COALESCE_BYTES = 16 * 1024 * 1024;

function formatDuration(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}
const DEFAULT_POLLING_SCAN_MS = 30_000;
/** A send this soon after the previous one means changes are streaming in: wait LINGER_MS to gather more. */
const STREAMING_WINDOW_MS = 150;
const LINGER_MS = 50;
/** A backlog this large fills messages by itself. */
const LINGER_BELOW_RECORDS = 200;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * How long the sender waits before packing the next message. A lone change
 * goes at once; while changes stream in (the previous send was moments ago)
 * it waits a little so one message carries many: the target applies a set
 * one message at a time, so its pace is set per message, not per record.
 */
export function lingerBeforeSend(sinceLastSendMs: number, backlogRecords: number): number {
  const streaming = sinceLastSendMs < STREAMING_WINDOW_MS;
  return streaming && backlogRecords > 0 && backlogRecords < LINGER_BELOW_RECORDS ? LINGER_MS : 0;
}
/** Warn when the backlog passes this fraction of the limit. */
const JOURNAL_WARN_FRACTION = 0.8;

/** The environment of a marker's commands. */
export function markerEnvironment(set: string, id: string, seq: number, fields: TaskFields): Record<string, string> {
  return {
    TIDEMARK_SET: set,
    TIDEMARK_TASK_ID: id,
    TIDEMARK_TASK_SEQ: String(seq),
    TIDEMARK_TASK_ACTION: fields.action,
    TIDEMARK_TASK_LABEL: fields.label ?? "",
  };
}

class SetRunner {
  readonly spec: SetSpec;
  readonly #agent: Agent;
  #chain: Promise<unknown> = Promise.resolve();
  /** The next message, packed while the one before it is on the wire. */
  readonly #ahead = new PackedAhead();
  #hints = new Set<string>();
  #hintTimer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  /** Seq of the resync record in flight: no second resync until the target has applied it. */
  #resyncSeq = 0;
  #warnedNearLimit = false;
  /** Markers whose on-transmit command ran in this process: a retried send does not run it again. */
  readonly #transmitted = new Set<string>();
  /** The watcher failed: the set is kept up to date by frequent scans. */
  degraded = false;
  /** The check of the journal's continuity with the target, once it succeeded (or while it runs). */
  #continuity: Promise<void> | undefined;
  readonly #busy: BusyFiles;

  constructor(agent: Agent, spec: SetSpec) {
    this.#agent = agent;
    this.spec = spec;
    this.#busy = new BusyFiles(agent.options.coalesceBytes ?? DEFAULT_COALESCE_BYTES);
  }

  get #journal(): Journal {
    return this.#agent.journal;
  }

  /** Runs work after everything queued before it: scans, captures and resyncs of a set never interleave. */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(work, work);
    this.#chain = run.catch(() => undefined);
    return run;
  }

  /**
   * True when the set's backlog (with what a scan holds, not journaled yet) is at the journal limit, or would pass
   * it with a change of nextBytes (and marks it so); warns as it nears the limit. A change larger than the limit is
   * journaled once nothing else is held: it goes alone, else it could never be sent.
   */
  #journalFull(unjournaledBytes = 0, nextBytes = 0): boolean {
    const limit = this.#agent.options.journalLimitBytes ?? DEFAULT_JOURNAL_LIMIT_BYTES;
    const { backlogBytes, overflowed } = this.#journal.counters(this.spec.name);
    if (overflowed) return true;
    const held = backlogBytes + unjournaledBytes;
    if (held >= limit || (held > 0 && held + nextBytes > limit)) {
      this.#journal.setOverflowed(this.spec.name, true);
      this.#agent.log.error("journal limit reached: the set is out of sync until the backlog drains, then a catch-up scan journals what changed", {
        set: this.spec.name,
        backlogBytes,
        limit,
      });
      return true;
    }
    const near = backlogBytes >= limit * JOURNAL_WARN_FRACTION;
    if (near && !this.#warnedNearLimit) this.#agent.log.warn("journal nearly full", { set: this.spec.name, backlogBytes, limit });
    this.#warnedNearLimit = near;
    return false;
  }

  /** After a send: a set that overflowed and drained below half the limit catches up with a scan. */
  async #maybeCatchUp(): Promise<void> {
    const limit = this.#agent.options.journalLimitBytes ?? DEFAULT_JOURNAL_LIMIT_BYTES;
    const { backlogBytes, overflowed } = this.#journal.counters(this.spec.name);
    if (!overflowed || backlogBytes > limit / 2) return;
    this.#journal.setOverflowed(this.spec.name, false);
    this.#agent.log.info("journal drained; catching up with a scan", { set: this.spec.name });
    await this.scan();
  }

  /** What changed in the set since the index: a scan of the tree, or a read of the volume (all of it when `full`). */
  #barrier(options: Pick<ScanOptions, "onProgress" | "shouldStop" | "defer"> & { full?: boolean } = {}): Promise<ScanReport> {
    const { full = false, defer, ...rest } = options;
    if (this.spec.volume) return volumeScan(this.#journal, this.spec, { full, ...rest });
    return barrierScan(this.#journal, this.spec, { ...rest, ...(defer ? { defer } : {}), onJournaled: (changes, seqs) => this.#busy.journaled(changes, seqs) });
  }

  #refuseVolume(what: string): void {
    if (this.spec.volume) throw new VolumeError(`set "${this.spec.name}" is a volume: ${what} is for file sets (a marker's snapshot records and restores a volume)`);
  }

  async scan(): Promise<ScanReport> {
    // Nothing can be journaled: the catch-up scan after the disk has space again does this one's work.
    if (this.#agent.health.full) return { entries: 0, changes: 0, bytes: 0, skipped: [], stopped: true };
    const report = await this.exclusive(() => {
      const { sentSeq } = this.#journal.counters(this.spec.name);
      return this.#barrier({ shouldStop: (unjournaled, next) => this.#journalFull(unjournaled, next), defer: (path) => this.#busy.defer(path, sentSeq) });
    });
    for (const skipped of report.skipped) {
      this.#agent.log.warn("not replicated", { set: this.spec.name, path: skipped.path, reason: skipped.reason });
    }
    if (report.changes > 0) this.wake();
    return report;
  }

  hint(path: string): void {
    this.#hints.add(path);
    this.#hintTimer ??= setTimeout(() => {
      this.#hintTimer = undefined;
      this.processHints().catch((error: unknown) => {
        // Nothing of a failed capture reached the index, so the next scan (after a full disk: the catch-up scan) finds it again.
        if (!this.#agent.health.handle(error)) this.#agent.log.error("capture failed; a barrier scan will catch up", { set: this.spec.name, error: String(error) });
      });
    }, HINT_DELAY_MS);
  }

  /** Captures every hinted path (and its parent directory, whose mtime moved); a volume's hint reads the volume. */
  processHints(): Promise<number> {
    if (this.spec.volume) {
      this.#hints.clear();
      return this.scan().then((report) => report.changes);
    }
    return this.exclusive(async () => {
      if (this.#agent.health.full || this.#journalFull()) {
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
      const sorted = [...paths].sort();
      // Large files that are gone from the source: if one reappears under another name, it moved.
      const moved = await this.#vanishedLargeFiles(sorted);
      let journaled = 0;
      // The batch is journaled in one transaction (one fsync), not one per file: under a burst of
      // writes the commits, not the reads, would set the pace.
      const pending: Change[] = [];
      let pendingBytes = 0;
      const deleted = new Set<string>();
      const flush = () => {
        this.#busy.journaled(pending, this.#journal.append(this.spec.name, pending));
        journaled += pending.length;
        pending.length = 0;
        pendingBytes = 0;
      };
      const { sentSeq } = this.#journal.counters(this.spec.name);
      const shouldStop = (unjournaled: number, next = 0) => this.#journalFull(unjournaled, next);
      // Parents before children, so a new directory is journaled before what it holds.
      for (const path of sorted) {
        if (moved.has(path) || this.#busy.defer(path, sentSeq)) continue;
        const known = this.#journal.entry(this.spec.name, path);
        const result = await capture(this.#journal, this.spec, path);
        if (result.isDirectory && !known) {
          // A directory new to the index: its contents may predate the watch on it.
          flush();
          const report = await barrierScan(this.#journal, this.spec, { from: path, shouldStop, onJournaled: (changes, seqs) => this.#busy.journaled(changes, seqs) });
          journaled += report.changes;
          if (report.stopped) break;
          continue;
        }
        const changes = await this.#asRenames(result.changes, moved, deleted);
        const bytes = changes.reduce((sum, change) => sum + changeBytes(change), 0);
        if (bytes > 0 && shouldStop(pendingBytes, bytes)) {
          // Not journaled (the index still holds the old state): the catch-up scan after the backlog drains finds it.
          await Promise.all(changes.map((change) => change.op === "put" && "spool" in change.content && rm(join(this.#journal.spoolDir, change.content.spool), { force: true })));
          break;
        }
        for (const change of changes) if (change.op === "delete") deleted.add(change.path);
        pending.push(...changes);
        pendingBytes += bytes;
      }
      // What vanished and did not reappear was deleted.
      for (const path of moved.keys()) {
        if (!deleted.has(path)) pending.push(...(await capture(this.#journal, this.spec, path)).changes);
      }
      flush();
      if (journaled > 0) this.wake();
      return journaled;
    });
  }

  /** Indexed files of at least a block that no longer exist, by path. */
  async #vanishedLargeFiles(paths: readonly string[]): Promise<Map<string, IndexEntry>> {
    const vanished = new Map<string, IndexEntry>();
    for (const path of paths) {
      const known = this.#journal.entry(this.spec.name, path);
      if (known?.kind !== "file" || known.sha256 === null || known.size < BLOCK_SIZE) continue;
      try {
        await lstat(join(this.spec.root, path));
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === "ENOENT" || code === "ENOTDIR") vanished.set(path, known);
      }
    }
    return vanished;
  }

  /** A put of a new file with the content, mode and mtime of a vanished one becomes a rename of it. */
  async #asRenames(changes: Change[], vanished: Map<string, IndexEntry>, deleted: ReadonlySet<string>): Promise<Change[]> {
    if (vanished.size === 0) return changes;
    const out: Change[] = [];
    for (const change of changes) {
      const from =
        change.op === "put" && !change.delta
          ? [...vanished.values()].find(
              (v) =>
                v.sha256 === change.sha256 &&
                v.size === change.size &&
                v.mode === change.mode &&
                v.mtimeNs === change.mtimeNs &&
                // Not already deleted (with a folder removed earlier in this batch).
                !deleted.has(v.path) &&
                this.#journal.entry(this.spec.name, v.path) !== undefined,
            )
          : undefined;
      if (change.op !== "put" || !from) {
        out.push(change);
        continue;
      }
      vanished.delete(from.path);
      if ("spool" in change.content) await rm(join(this.#journal.spoolDir, change.content.spool), { force: true });
      out.push({ op: "rename", from: from.path, to: change.path });
    }
    return out;
  }

  /** Journals a resync record and a full mirror of the set behind it. */
  async resync(reason: string): Promise<void> {
    await this.fullMirror(reason);
  }

  /**
   * Brings the index in line with the source (hashing every file when deep),
   * then journals a verify record carrying the index as manifest.
   */
  async journalVerify(options: VerifyOptions): Promise<{ id: string; seq: number; scan: ScanReport }> {
    this.#refuseVolume("verify");
    return this.exclusive(async () => {
      const scan = await barrierScan(this.#journal, this.spec, { rehash: options.deep, ...(options.onProgress ? { onProgress: options.onProgress } : {}) });
      const manifest = await writeManifest(this.#journal, this.spec.name);
      const id = randomUUID();
      const [seq] = this.#journal.append(this.spec.name, [
        { op: "verify", id, deep: options.deep, orphans: options.orphans, size: manifest.size, sha256: manifest.sha256, content: manifest.content },
      ]);
      this.wake();
      return { id, seq: seq ?? 0, scan };
    });
  }

  /**
   * Journals what a verification found wrong: the source's current version of
   * each missing or different entry, as only the differing blocks when a deep
   * check named them and the source still holds what the index says.
   */
  async repair(report: VerifyReport): Promise<number> {
    this.#refuseVolume("repair");
    return this.exclusive(async () => {
      const set = this.spec.name;
      let journaled = 0;
      const paths = [...report.missing, ...report.different.map((d) => d.path)].sort();
      const blocks = new Map(report.different.filter((d) => d.blocks && d.blocks.length > 0).map((d) => [d.path, d.blocks ?? []]));
      for (const path of paths) {
        const known = this.#journal.entry(set, path);
        const delta = known && blocks.has(path) ? await blockRepair(this.#journal, this.spec, known, blocks.get(path) ?? []) : undefined;
        let changes: Change[];
        if (delta) changes = [delta];
        else {
          // Forget what the index says of the path: capture then journals the source's version in full.
          if (known) this.#journal.forget(set, path);
          changes = (await capture(this.#journal, this.spec, path)).changes;
        }
        this.#journal.append(set, changes);
        journaled += changes.length;
      }
      if (journaled > 0) this.wake();
      return journaled;
    });
  }

  /** A full mirror: a resync record, the index forgotten, every entry journaled again. */
  fullMirror(reason: string, onProgress?: (report: Readonly<ScanReport>) => void): Promise<ScanReport> {
    return this.exclusive(async () => {
      this.#journal.clearIndex(this.spec.name);
      const [seq] = this.#journal.append(this.spec.name, [{ op: "resync", reason }]);
      this.#resyncSeq = seq ?? 0;
      const report = await this.#barrier({ full: true, ...(onProgress ? { onProgress } : {}) });
      this.wake();
      return report;
    });
  }

  async checkTarget(): Promise<void> {
    const status = await this.#agent.options.targetStatus?.(this.spec.name);
    if (!status || status.state !== "out-of-sync") return;
    if (this.#resyncSeq > status.lastSeq || awaitingGeneration(this.#journal.generation(this.spec.name), status)) return;
    await this.#recover(status.reason ?? "target out of sync");
  }

  /**
   * Once, before the set's first send (DESIGN 8): a journal the target is
   * ahead of begins a new generation, and the set is mirrored behind its
   * resync, so no record of it is dropped as a duplicate. Retried on the next
   * send when the target's status cannot be read.
   */
  checkContinuity(): Promise<void> {
    this.#continuity ??= this.#checkContinuity().catch((error: unknown) => {
      this.#continuity = undefined;
      throw error;
    });
    return this.#continuity;
  }

  async #checkContinuity(): Promise<void> {
    const targetStatus = this.#agent.options.targetStatus;
    if (!targetStatus) return;
    const set = this.spec.name;
    const status = await targetStatus(set);
    const reason = continuityBreak(this.#journal.generation(set), this.#journal.counters(set).nextSeq - 1, status);
    if (!reason) return;
    const generation = this.#journal.beginGeneration(set);
    this.#agent.log.warn("the target is ahead of this journal; beginning a new journal generation", { set, generation: generation.id, reason });
    // The recovery journals its resync at once; the rest of it (a verification) waits on the stream, which waits
    // on this check: it goes on in the background, and only the resync (or full mirror) is awaited, so nothing
    // of the new generation is sent ahead of it.
    this.#recover(`new journal generation ${generation.id}: ${reason}`).catch((error: unknown) =>
      this.#agent.log.error(`the mirror after a journal generation change failed; run \`tidemark mirror ${set} --mode diff\``, { set, error: String(error) }),
    );
    await this.exclusive(async () => undefined);
  }

  /** Brings the set back in line with a resync and a mirror behind it. */
  async #recover(reason: string): Promise<void> {
    const recover = this.#agent.options.recover;
    if (!recover) {
      this.#agent.log.warn("target out of sync; resyncing with a full mirror", { set: this.spec.name, reason });
      await this.resync(reason);
      return;
    }
    this.#agent.log.warn("target out of sync; recovering", { set: this.spec.name, reason });
    await recover(this.spec.name, reason);
  }

  /**
   * The barrier and the marker (DESIGN 3): a scan of the whole set against
   * the index journals every change the watcher missed or has not delivered
   * yet, and the marker takes the next seq right behind them. Nothing else of
   * the set is journaled in between.
   */
  async insertMarker(request: MarkerRequest): Promise<QueuedMarker> {
    const queued = await this.exclusive(async () => {
      const scan = await this.#barrier({ full: true, ...(request.onProgress ? { onProgress: request.onProgress } : {}) });
      const id = request.id ?? newTaskId();
      const fields = { ...request.fields, insertedAt: request.fields.insertedAt ?? new Date().toISOString() };
      // What the index holds now is what the target must hold at the marker.
      const digest = await markerDigest(this.#journal, this.spec, fields);
      const [seq] = this.#journal.append(this.spec.name, [{ op: "task", id, fields, ...digest, ...(request.onTransmit ? { onTransmit: request.onTransmit } : {}) }]);
      return { id, seq: seq ?? 0, generation: this.#journal.generation(this.spec.name).id, scan };
    });
    this.wake();
    this.#agent.log.info("task marker journaled", { set: this.spec.name, task: queued.id, seq: queued.seq, action: request.fields.action, barrierChanges: queued.scan.changes });
    if (!request.onQueue) return queued;
    const onQueue = await runHook(request.onQueue, { env: markerEnvironment(this.spec.name, queued.id, queued.seq, request.fields) });
    if (!hookSucceeded(onQueue)) this.#agent.log.warn(describeHook("on-queue", onQueue), { set: this.spec.name, task: queued.id });
    return { ...queued, onQueue };
  }

  /** Journals a prune of the set's snapshots (the applier keeps the newest `keep`). */
  journalPrune(keep: number): Promise<{ id: string; seq: number }> {
    return this.exclusive(async () => {
      const id = randomUUID();
      const [seq] = this.#journal.append(this.spec.name, [{ op: "prune", id, keep }]);
      this.wake();
      return { id, seq: seq ?? 0 };
    });
  }

  /** Journals a drill's report: the applier writes it to drills/<set>/<id>.json. */
  journalDrill(report: DrillReport): Promise<number> {
    return this.exclusive(async () => {
      const [seq] = this.#journal.append(this.spec.name, [{ op: "drill", report }]);
      this.wake();
      return seq ?? 0;
    });
  }

  /** Restarts the target's seq chain without resending anything: a verification behind it finds what to repair. */
  restartChain(reason: string): Promise<number> {
    return this.exclusive(async () => {
      const [seq] = this.#journal.append(this.spec.name, [{ op: "resync", reason }]);
      this.#resyncSeq = seq ?? 0;
      this.wake();
      return this.#resyncSeq;
    });
  }

  /** Captures the large files that waited for their previous version to be sent, once it is. */
  async #captureWaiting(): Promise<void> {
    const ready = this.#busy.ready(this.#journal.counters(this.spec.name).sentSeq);
    if (ready.length === 0) return;
    for (const path of ready) this.#hints.add(path);
    await this.processHints();
  }

  /** Sends until the journal of this set is empty. */
  async drain(): Promise<number> {
    let total = 0;
    for (;;) {
      const sent = await this.#sendNext();
      await this.#maybeCatchUp();
      await this.#captureWaiting();
      if (sent.records === 0 && this.#journal.counters(this.spec.name).backlogRecords === 0) return total;
      total += sent.records;
    }
  }

  async #sendNext() {
    await this.checkContinuity();
    const { transport, compression, announceReceived } = this.#agent.options;
    return sendNext(this.#journal, transport, this.spec.name, {
      ...(compression ? { compression } : {}),
      ahead: this.#ahead,
      beforeMarkers: (set, markers) => this.#beforeTransmit(markers),
      ...(announceReceived ? { afterMarkers: announceReceived } : {}),
      onSkipped: (set, skipped, reason) =>
        this.#agent.log.error("not replicated: the target refused a record for good; it keeps the last good version", { set, seq: skipped.seq, record: skipped.what, reason }),
    });
  }

  async #beforeTransmit(markers: readonly PackedMarker[]): Promise<void> {
    for (const marker of markers) {
      if (!marker.onTransmit || this.#transmitted.has(marker.id)) continue;
      this.#transmitted.add(marker.id);
      const result = await runHook(marker.onTransmit, { env: markerEnvironment(this.spec.name, marker.id, marker.seq, marker.fields) });
      // The marker goes out either way: a hook never holds up replication.
      if (hookSucceeded(result)) this.#agent.log.info("on-transmit command done", { set: this.spec.name, task: marker.id, ms: result.ms });
      else this.#agent.log.warn(describeHook("on-transmit", result), { set: this.spec.name, task: marker.id });
    }
  }

  wake(): void {
    this.#wake?.();
  }

  async sendLoop(stopped: () => boolean): Promise<void> {
    let lastSend = 0;
    while (!stopped()) {
      let sent = 0;
      try {
        const linger = lingerBeforeSend(Date.now() - lastSend, this.#journal.counters(this.spec.name).backlogRecords);
        if (linger > 0) await sleep(linger);
        lastSend = Date.now();
        // While the disk is full, marking a message sent would fail: sending it would only send it twice.
        sent = this.#agent.health.full ? 0 : (await this.#sendNext()).records;
        await this.#maybeCatchUp();
        await this.#captureWaiting();
      } catch (error) {
        if (stopped()) return;
        if (!this.#agent.health.handle(error)) this.#agent.log.error("send failed", { set: this.spec.name, error: String(error) });
      }
      if (sent === 0 && !stopped()) {
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, IDLE_WAKE_MS);
          this.#wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.#wake = undefined;
      }
    }
  }

  cancelHints(): void {
    clearTimeout(this.#hintTimer);
    this.#hintTimer = undefined;
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
  readonly #rescanTimers = new Map<SetRunner, NodeJS.Timeout>();
  #loops: Promise<void>[] = [];
  #statusTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: AgentOptions) {
    this.options = Object.freeze({ monitorEnabled: true, statusPollMs: 5_000, ...options });
    this.journal = options.journal;
    this.log = options.log ?? silentLogger;
    this.#runners = new Map(options.sets.map((spec) => [spec.name, new SetRunner(this, spec)]));
    this.health = new JournalHealth({
      journal: this.journal,
      log: this.log,
      monitorEnabled: this.options.monitorEnabled ?? true,
      onResumed: () => this.#catchUp(),
      onCorrupt: (error) => this.options.onFatal?.(error),
      ...(options.onJournalProblem ? { onProblem: options.onJournalProblem } : {}),
    });
  }

  /** After a full disk: a scan of every set journals what changed while nothing could be. */
  async #catchUp(): Promise<void> {
    for (const runner of this.#runners.values()) {
      try {
        await runner.scan();
      } catch (error) {
        if (!this.health.handle(error)) this.log.error("scan failed", { set: runner.spec.name, error: String(error) });
      }
      runner.wake();
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
  async start(): Promise<void> {
    for (const runner of this.#runners.values()) {
      if (this.options.monitorEnabled) {
        this.#watch(runner);
        this.#loops.push(runner.sendLoop(() => this.#stopped));
        this.#scheduleRescan(runner);
      }
      // Before the scan journals anything: a new generation's resync goes ahead of it.
      await runner.checkContinuity().catch((error: unknown) =>
        this.log.warn("target status not readable; the journal's continuity is checked before the first send", { set: runner.spec.name, error: String(error) }),
      );
      let report: ScanReport;
      try {
        report = await runner.scan();
      } catch (error) {
        // A full disk at start: the agent waits for space and catches up then, like a supervisor would want.
        if (this.health.handle(error) && this.health.full) continue;
        throw journalFault(error, this.journal.path);
      }
      this.log.info("set scanned", { set: runner.spec.name, entries: report.entries, journaled: report.changes });
    }
    if (this.options.monitorEnabled && this.options.targetStatus) this.#pollStatus();
  }

  #watch(runner: SetRunner): void {
    const set = runner.spec.name;
    const watch = runner.spec.volume ? (this.options.watchVolume ?? watchVolume) : (this.options.watch ?? watchSet);
    const watcher = watch(
      runner.spec,
      {
        hint: (path) => runner.hint(path),
        error: (error) => {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "ENOSPC" || code === "EMFILE" || code === "ENFILE") {
            // The watch is incomplete from now on: scans take over, often enough to keep up.
            const problem = `the watcher ran out of ${code === "ENOSPC" ? "inotify watches" : "file descriptors"}; scanning every ${formatDuration(this.#pollingScanMs)} instead (raise fs.inotify.max_user_watches, e.g. sysctl fs.inotify.max_user_watches=1048576, then restart the agent)`;
            this.log.error(problem, { set, error: error.message });
            this.journal.setWatcherProblem(set, problem);
            runner.degraded = true;
            this.#watchers.delete(watcher);
            watcher.close().catch(() => undefined);
            this.#scheduleRescan(runner);
          } else {
            this.log.warn("watcher error; rescanning the set", { set, error: error.message });
          }
          runner.scan().catch((e: unknown) => this.health.handle(e) || this.log.error("scan failed", { set, error: String(e) }));
        },
      },
      this.options.ignorePaths,
    );
    this.#watchers.add(watcher);
    this.journal.setWatcherProblem(set, null);
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
      try {
        await runner.scan();
      } catch (error) {
        if (!this.health.handle(error)) this.log.error("scan failed", { set: runner.spec.name, error: String(error) });
      }
      this.#scheduleRescan(runner);
    }, every);
    timer.unref();
    this.#rescanTimers.set(runner, timer);
  }

  #pollStatus(): void {
    this.#statusTimer = setTimeout(async () => {
      for (const runner of this.#runners.values()) {
        try {
          await runner.checkTarget();
        } catch (error) {
          this.log.debug("target status not readable", { set: runner.spec.name, error: String(error) });
        }
      }
      if (!this.#stopped) this.#pollStatus();
    }, this.options.statusPollMs);
  }

  scan(set: string): Promise<ScanReport> {
    return this.#runner(set).scan();
  }

  /** Captures pending watcher hints now instead of after the short gathering delay. */
  processHints(set: string): Promise<number> {
    return this.#runner(set).processHints();
  }

  hint(set: string, path: string): void {
    this.#runner(set).hint(path);
  }

  checkTarget(set: string): Promise<void> {
    return this.#runner(set).checkTarget();
  }

  /** Checks (once) that the set's journal continues the target's chain, beginning a new generation when not. */
  checkContinuity(set: string): Promise<void> {
    return this.#runner(set).checkContinuity();
  }

  drain(set: string): Promise<number> {
    return this.#runner(set).drain();
  }

  /** Journals a verification of a set; its report appears on the target once the applier reaches it. */
  journalVerify(set: string, options: VerifyOptions): Promise<{ id: string; seq: number; scan: ScanReport }> {
    return this.#runner(set).journalVerify(options);
  }

  /** Journals a task marker behind a barrier scan of the set. */
  insertMarker(set: string, request: MarkerRequest): Promise<QueuedMarker> {
    return this.#runner(set).insertMarker(request);
  }

  journalPrune(set: string, keep: number): Promise<{ id: string; seq: number }> {
    return this.#runner(set).journalPrune(keep);
  }

  /** Journals the source's version of what a verification found missing or different. */
  repair(set: string, report: VerifyReport): Promise<number> {
    return this.#runner(set).repair(report);
  }

  restartChain(set: string, reason: string): Promise<number> {
    return this.#runner(set).restartChain(reason);
  }

  /** Journals a drill's report (its seq); the target writes it when it reaches it. */
  journalDrill(set: string, report: DrillReport): Promise<number> {
    return this.#runner(set).journalDrill(report);
  }

  fullMirror(set: string, reason: string, onProgress?: (report: Readonly<ScanReport>) => void): Promise<ScanReport> {
    return this.#runner(set).fullMirror(reason, onProgress);
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
    this.health.stop();
    for (const runner of this.#runners.values()) {
      runner.cancelHints();
      runner.wake();
    }
    for (const timer of this.#rescanTimers.values()) clearTimeout(timer);
    await Promise.all([...this.#watchers].map((w) => w.close()));
    await Promise.allSettled(this.#loops);
    // Let captures already running finish before the journal closes.
    for (const runner of this.#runners.values()) await runner.exclusive(async () => undefined);
  }
}
