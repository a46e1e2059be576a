// What an operator or the agent asks of one set beyond replication, each
// journaled in the set's stream so the target does it in order: markers
// behind a barrier scan, verifications and their repairs, full mirrors and
// chain restarts, prunes and drill reports.

import { randomUUID } from "node:crypto";
import type { OrphanPolicy, VerifyReport } from "../contract/layout.ts";
import type { DrillReport } from "../contract/drills.ts";
import { boundChangingWhileRead, boundNotReplicated, newTaskId, type TaskFields } from "../contract/tasks.ts";
import { blockRepair, capture } from "./capture.ts";
import { describeHook, hookSucceeded, runHook, type HookResult } from "./hooks.ts";
import type { Change } from "./journal.ts";
import { writeManifest } from "./manifest.ts";
import { startMarkerDigest } from "./early-digest.ts";
import { namedScan } from "./held-files.ts";
import { barrierScan, type ScanReport } from "./scan.ts";
import type { SetCapture } from "./set-capture.ts";
import { assertRootAnswers, type SetContext } from "./set-context.ts";
import { markerNotReplicated } from "./not-replicated.ts";
import { VolumeError } from "./volume.ts";

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
  /** Files that kept changing while the barrier read them: the snapshot holds them as read, not as of one moment. */
  readonly changingWhileRead?: string[];
  /** Entries the set held at the barrier and does not replicate (sorted by path): the marker's snapshot lacks them. */
  readonly notReplicated?: { path: string; problem: string }[];
  readonly onQueue?: HookResult;
}

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

export class SetOperations {
  readonly #context: SetContext;
  readonly #capture: SetCapture;
  #resyncSeq = 0;

  constructor(context: SetContext, capture: SetCapture) {
    this.#context = context;
    this.#capture = capture;
  }

  /** Seq of the resync record in flight: no second resync until the target has applied it. */
  get resyncSeq(): number {
    return this.#resyncSeq;
  }

  /** Resyncs asked for and not journaled yet (their root look first): a status read meanwhile begins no other. */
  #resyncsAsked = 0;

  /** Whether a resync was asked for and is not journaled yet: it is on its way as much as one journaled. */
  get resyncAsked(): boolean {
    return this.#resyncsAsked > 0;
  }

  /** Counts a resync as asked for until `journaled` is called or `work` settles, whichever comes first. */
  #asking<T>(work: (journaled: () => void) => Promise<T>): Promise<T> {
    let asked = true;
    const journaled = () => {
      if (!asked) return;
      asked = false;
      this.#resyncsAsked -= 1;
    };
    this.#resyncsAsked += 1;
    return work(journaled).finally(journaled);
  }

  #refuseVolume(what: string): void {
    const { spec } = this.#context;
    if (spec.volume) throw new VolumeError(`set "${spec.name}" is a volume: ${what} is for file sets (a marker's snapshot records and restores a volume)`);
  }

  /**
   * Looks at the set's root now (within its time limit: root-watch.ts) and throws RootHeldError when the look found a
   * hold or one is recorded, naming `what` is refused: the journal's own guard goes by the hold recorded, without looking.
   */
  #rootGood(what: string): Promise<void> {
    return assertRootAnswers(this.#context, what);
  }

  /** Journals the next records of the set after everything queued before them, and wakes the sender. */
  #journal(records: Parameters<SetContext["journal"]["append"]>[1]): Promise<number> {
    return this.#context.exclusive(async () => {
      const [seq] = this.#context.journal.append(this.#context.spec.name, records);
      this.#context.wake();
      return seq ?? 0;
    });
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
    const { journal, spec } = this.#context;
    return this.#context.exclusive(async () => {
      await this.#rootGood("no verification is journaled");
      // Named while it runs, as every scan of the whole set (held-files.ts): status must not say in sync behind it.
      const scan = await namedScan(journal, spec.name, Date.now, () => barrierScan(journal, spec, { rehash: options.deep, beforeAppend: () => this.#rootGood("no verification is journaled"), ...(options.onProgress ? { onProgress: options.onProgress } : {}) }));
      const manifest = await writeManifest(journal, spec.name);
      await this.#rootGood("no verification is journaled");
      const id = randomUUID();
      const [seq] = journal.append(spec.name, [{ op: "verify", id, deep: options.deep, orphans: options.orphans, size: manifest.size, sha256: manifest.sha256, content: manifest.content }]);
      this.#context.wake();
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
    const { journal, spec } = this.#context;
    return this.#context.exclusive(async () => {
      const set = spec.name;
      // Before the index forgets anything: a held set keeps what it knew of the root.
      await this.#rootGood("no repair is journaled");
      let journaled = 0;
      const paths = [...report.missing, ...report.different.map((d) => d.path)].sort();
      const blocks = new Map(report.different.filter((d) => d.blocks && d.blocks.length > 0).map((d) => [d.path, d.blocks ?? []]));
      for (const path of paths) {
        const known = journal.index.entry(set, path);
        const delta = known && blocks.has(path) ? await blockRepair(journal, spec, known, blocks.get(path) ?? []) : undefined;
        let changes: Change[];
        if (delta) changes = [delta];
        else {
          // Forget what the index says of the path: capture then journals the source's version in full.
          if (known) journal.index.forget(set, path);
          changes = (await capture(journal, spec, path)).changes;
        }
        await this.#rootGood("no repair is journaled");
        journal.append(set, changes);
        journaled += changes.length;
      }
      if (journaled > 0) this.#context.wake();
      return journaled;
    });
  }

  /** A full mirror: a resync record, the index forgotten, every entry journaled again. */
  fullMirror(reason: string, onProgress?: (report: Readonly<ScanReport>) => void): Promise<ScanReport> {
    const { journal, spec } = this.#context;
    return this.#asking((journaled) =>
      this.#context.exclusive(async () => {
        // Before the index is cleared: a held set's index is what tells its root's files from an empty mount point.
        await this.#rootGood("no mirror is journaled");
        journal.clearIndex(spec.name);
        const [seq] = journal.append(spec.name, [{ op: "resync", reason }]);
        this.#resyncSeq = seq ?? 0;
        journaled();
        const report = await this.#capture.barrier({ full: true, ...(onProgress ? { onProgress } : {}) });
        this.#context.wake();
        return report;
      }),
    );
  }

  /**
   * The barrier and the marker (DESIGN 3): a scan of the whole set against
   * the index journals every change the watcher missed or has not delivered
   * yet, and the marker takes the next seq right behind them. Nothing else of
   * the set is journaled in between.
   */
  async insertMarker(request: MarkerRequest): Promise<QueuedMarker> {
    const { journal, spec, log } = this.#context;
    const queued = await this.#context.exclusive(async () => {
      // A marker claims the source's state at a point: not while the set's root is missing, swapped or empty (the
      // journal refuses it too, should the barrier find the root gone).
      await this.#rootGood("no marker is journaled (it would not be a consistent point)");
      // Read beside the scan; kept only when nothing changed the index meanwhile (early-digest.ts).
      const digestRead = startMarkerDigest(journal, spec, request.fields);
      const changing: string[] = [];
      const onChangingWhileRead = (path: string) => changing.push(path);
      const scan = await this.#capture.barrier({ full: true, onChangingWhileRead, ...(request.onProgress ? { onProgress: request.onProgress } : {}) }).catch(async (error: unknown) => {
        await digestRead.discard();
        throw error;
      });
      const id = request.id ?? newTaskId();
      const fields = { ...request.fields, insertedAt: request.fields.insertedAt ?? new Date().toISOString() };
      // What the index holds now is what the target must hold at the marker.
      const digest = await digestRead.finish();
      changing.sort();
      // The target records them with the snapshot: its task fails naming them, and restore warns of them.
      const changingWhileRead = boundChangingWhileRead(changing);
      // What the set holds and does not replicate: the target records it with the snapshot, which names itself incomplete.
      const left = markerNotReplicated(journal, spec);
      const notReplicated = boundNotReplicated(left);
      await this.#rootGood("no marker is journaled (it would not be a consistent point)");
      const [seq] = journal.append(spec.name, [
        { op: "task", id, fields, ...digest, ...(changingWhileRead ? { changingWhileRead } : {}), ...(notReplicated ? { notReplicated } : {}), ...(request.onTransmit ? { onTransmit: request.onTransmit } : {}) },
      ]);
      return { id, seq: seq ?? 0, generation: journal.sets.generation(spec.name).id, scan, ...(changing.length > 0 ? { changingWhileRead: changing } : {}), ...(left.length > 0 ? { notReplicated: left } : {}) };
    });
    this.#context.wake();
    log.info("task marker journaled", { set: spec.name, task: queued.id, seq: queued.seq, action: request.fields.action, barrierChanges: queued.scan.changes });
    if (queued.changingWhileRead) {
      const { paths, count } = boundChangingWhileRead(queued.changingWhileRead) ?? { paths: [], count: 0 };
      log.warn("files changed while the marker's barrier read them: the snapshot holds them as read", { set: spec.name, task: queued.id, files: paths, count });
    }
    if (queued.notReplicated) {
      const { paths, count } = boundNotReplicated(queued.notReplicated) ?? { paths: [], count: 0 };
      log.warn("the set holds entries it does not replicate: the marker's snapshot lacks them", { set: spec.name, task: queued.id, entries: paths, count });
    }
    if (!request.onQueue) return queued;
    const onQueue = await runHook(request.onQueue, { env: markerEnvironment(spec.name, queued.id, queued.seq, request.fields) });
    if (!hookSucceeded(onQueue)) log.warn(describeHook("on-queue", onQueue), { set: spec.name, task: queued.id });
    return { ...queued, onQueue };
  }

  /** Journals a prune of the set's snapshots (the applier keeps the newest `keep`). */
  async journalPrune(keep: number): Promise<{ id: string; seq: number }> {
    const id = randomUUID();
    return { id, seq: await this.#journal([{ op: "prune", id, keep }]) };
  }

  /** Journals a drill's report: the applier writes it to drills/<set>/<id>.json. */
  journalDrill(report: DrillReport): Promise<number> {
    return this.#journal([{ op: "drill", report }]);
  }

  /** Restarts the target's seq chain without resending anything: a verification behind it finds what to repair. */
  restartChain(reason: string): Promise<number> {
    const { journal, spec } = this.#context;
    return this.#asking(() =>
      this.#context.exclusive(async () => {
        await this.#rootGood("no recovery is journaled");
        const [seq] = journal.append(spec.name, [{ op: "resync", reason }]);
        this.#resyncSeq = seq ?? 0;
        this.#context.wake();
        return this.#resyncSeq;
      }),
    );
  }
}
