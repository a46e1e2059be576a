// Folder objects a message would write only to overwrite them again: a
// folder's mode and mtime change with every entry created in it, so a message
// often sets the same folder several times. Only the last of those writes
// reaches the store; each one still counts as applied and goes into the
// set's history, so a restore of any moment gives the folder the mtime it had.
// With history on, folder writes also wait across messages (DeferredFolders):
// a trickle of new files would otherwise cost a folder PUT per file.

import { ZodError } from "zod";
import { mapConcurrent } from "../../contract/async.ts";
import { dirKey, encodeMeta, type SetStatus } from "../../contract/layout.ts";
import type { WireRecord } from "../../contract/wire.ts";
import { HistoryError, readSegment } from "../history/history-store.ts";
import { readStoredStatus } from "../store/set-status.ts";
import { foldSegments } from "../store/status-checkpoint.ts";
import type { TargetStore } from "../store/store.ts";

/**
 * Records that neither read nor remove a folder object and cannot stop the
 * message part way (a delta finds its base missing: the checkpoint would then
 * cover a folder write that was left to a later one), so a folder write before
 * them may be left to a later one.
 */
function leavesFolders(record: WireRecord): boolean {
  if (record.op === "put") return record.delta === undefined;
  return record.op === "symlink" || record.op === "block" || record.op === "skip";
}

/**
 * Seqs of mkdir records whose write a later mkdir of the same path in the
 * same records replaces, with nothing between them that could see the folder
 * object (a delete, rename, marker, verification, prune, resync or drill) or
 * end the message early (a delta).
 */
export function supersededFolderWrites(records: readonly WireRecord[]): Set<number> {
  const superseded = new Set<number>();
  /** Folders set since the last record that could see them: path -> seq of the write. */
  let pending = new Map<string, number>();
  for (const record of records) {
    if (record.op === "mkdir") {
      const before = pending.get(record.path);
      if (before !== undefined) superseded.add(before);
      pending.set(record.path, record.seq);
    } else if (!leavesFolders(record)) pending = new Map();
  }
  return superseded;
}

/**
 * How long a folder's new mtime may wait before it is written to the live
 * folder object while changes keep coming. A trickle of new files changes a
 * folder per file: writing each at once doubles the PUTs of a lone change.
 * Readers of the folder objects (a snapshot, a verification, a history
 * checkpoint) get them written first; the history segments carry every
 * folder change the moment it is applied (restores to any moment are exact).
 */
export const FOLDER_WRITE_INTERVAL_MS = 5 * 60_000;

/** Records that read or remove folder objects (or take the set's state): every folder write left for later goes before them. */
export function readsFolders(record: WireRecord): boolean {
  return !(record.op === "put" || record.op === "mkdir" || record.op === "symlink" || record.op === "block" || record.op === "skip");
}

/** A folder's mode and mtime, to be written to its object. */
export interface FolderWrite {
  readonly mode: number;
  readonly mtimeNs: string;
}

/**
 * The first history segment whose folder changes may not be on the folder
 * objects yet, by what the stored status says: those its writer left for
 * later (`folderWritesFrom`), and any segment written after it (its writer
 * may have crashed before writing them, or its status write waited).
 */
export function firstUnwrittenSegment(stored: SetStatus | undefined): number | undefined {
  const after = stored?.history?.segment;
  const left = stored?.folderWritesFrom;
  if (after === undefined) return left;
  return left === undefined ? after : Math.min(after, left);
}

/** A segment that is missing (retention removed it) or cannot be parsed: it cannot be replayed, and no retry changes that. */
function unreadableSegment(error: unknown): error is Error {
  return error instanceof HistoryError || error instanceof SyntaxError || error instanceof ZodError;
}

/**
 * Folder writes the history segments from..end-1 hold, in order: the last of each path, none for a folder deleted after.
 * A segment it cannot read is passed over and told to `unreadable`: the folder writes it held are lost.
 */
export async function replayFolderWrites(
  store: TargetStore,
  set: string,
  from: number,
  end: number,
  unreadable: (segment: number, error: Error) => void = () => undefined,
): Promise<Map<string, FolderWrite>> {
  const writes = new Map<string, FolderWrite>();
  for (let n = from; n < end; n++) {
    let entries;
    try {
      entries = await readSegment(store, set, n);
    } catch (error) {
      if (!unreadableSegment(error)) throw error;
      unreadable(n, error);
      continue;
    }
    for (const entry of entries) {
      if (entry.op === "mkdir") writes.set(entry.path, { mode: entry.mode, mtimeNs: entry.mtimeNs });
      else if (entry.op === "delete") writes.delete(entry.path);
    }
  }
  return writes;
}

/**
 * The folder writes of a set not on its folder objects yet, as the bucket
 * tells them (the status and the history segments): what the live folders
 * will be once written. For readers of the live mirror that cannot wait.
 */
export async function pendingFolderWrites(store: TargetStore, set: string): Promise<Map<string, FolderWrite>> {
  const stored = (await readStoredStatus(store, set))?.status;
  const from = firstUnwrittenSegment(stored);
  if (!stored || from === undefined) return new Map();
  const folded = await foldSegments(store, structuredClone(stored));
  return replayFolderWrites(store, set, from, folded.history?.segment ?? from);
}

interface SetFolders {
  /** Applied (checkpointed) folder writes not written yet, by path. */
  readonly pending: Map<string, FolderWrite>;
  /** The history segment the oldest of them is in. */
  from: number | undefined;
  /** When the oldest was left for later (ms, the applier's clock). */
  since: number | undefined;
  /** This message's folder writes, not checkpointed yet. */
  staged: Map<string, FolderWrite>;
  stagedFrom: number | undefined;
}

/**
 * Folder writes the applier leaves for later (history on): kept per set
 * until something reads the folders, a history checkpoint is due, or the
 * oldest waited FOLDER_WRITE_INTERVAL_MS; the status names the segment they
 * start at (`folderWritesFrom`), and an applier that did not write the
 * status it reads finds them again in the segments (recover).
 */
export class DeferredFolders {
  readonly #sets = new Map<string, SetFolders>();

  #of(set: string): SetFolders {
    let folders = this.#sets.get(set);
    if (!folders) {
      folders = { pending: new Map(), from: undefined, since: undefined, staged: new Map(), stagedFrom: undefined };
      this.#sets.set(set, folders);
    }
    return folders;
  }

  /** A message of the set begins: what a failed one left staged goes; the seqs of its folder writes a later one in it replaces. */
  begin(set: string, records: readonly WireRecord[]): Set<number> {
    const folders = this.#sets.get(set);
    if (folders) {
      folders.staged = new Map();
      folders.stagedFrom = undefined;
    }
    return supersededFolderWrites(records);
  }

  /** A folder write of the message, left for later; `segment` is the history segment that records it. */
  defer(set: string, path: string, write: FolderWrite, segment: number): void {
    const folders = this.#of(set);
    folders.staged.set(path, write);
    folders.stagedFrom ??= segment;
  }

  /** Writes every folder write of the set left for later (the message's too) to the folder objects. */
  async flush(store: TargetStore, status: SetStatus): Promise<void> {
    const folders = this.#sets.get(status.set);
    if (!folders) return;
    const writes = new Map([...folders.pending, ...folders.staged]);
    await mapConcurrent([...writes], FLUSH_CONCURRENCY, ([path, write]) =>
      store.put(dirKey(status.set, path), new Uint8Array(), encodeMeta({ kind: "dir", mode: write.mode, mtimeNs: write.mtimeNs, gen: status.snapshotGen })),
    );
    folders.pending.clear();
    folders.staged.clear();
    folders.from = folders.since = folders.stagedFrom = undefined;
  }

  /**
   * The message's records are checkpointed: its folder writes join those
   * left for later, which go now when `due` (a history checkpoint reads the
   * folders) or when the oldest waited long enough. The status then names
   * where they start.
   */
  async commit(store: TargetStore, status: SetStatus, due: boolean, now: number): Promise<void> {
    const folders = this.#sets.get(status.set);
    if (folders && folders.staged.size > 0) {
      for (const [path, write] of folders.staged) folders.pending.set(path, write);
      folders.from ??= folders.stagedFrom;
      folders.since ??= now;
      folders.staged = new Map();
      folders.stagedFrom = undefined;
    }
    if (folders?.since !== undefined && (due || now - folders.since >= FOLDER_WRITE_INTERVAL_MS || now < folders.since)) await this.flush(store, status);
    this.note(status);
  }

  /** Names in the status the segment the set's unwritten folder writes start at (none: the field goes). */
  note(status: SetStatus): void {
    const from = this.#sets.get(status.set)?.from;
    if (from === undefined) delete status.folderWritesFrom;
    else status.folderWritesFrom = from;
  }

  /**
   * The status read was not this applier's own: what it kept for the set may
   * be stale, and another writer (or this one before a crash) may have left
   * folder writes in segments. They are found there again (`stored` as read,
   * `folded` with the segments after it), to be written like any other.
   * Segments it cannot read are named in `folded` (folderWritesLost); the status is written with this message,
   * as the folder writes it names (`folderWritesFrom`) go.
   */
  async recover(store: TargetStore, stored: SetStatus | undefined, folded: SetStatus, now: Date = new Date()): Promise<void> {
    this.#sets.delete(folded.set);
    const from = firstUnwrittenSegment(stored);
    const end = folded.history?.segment;
    if (from === undefined || end === undefined || from >= end) return;
    const lost: { segment: number; error: Error }[] = [];
    const writes = await replayFolderWrites(store, folded.set, from, end, (segment, error) => lost.push({ segment, error }));
    noteLostFolderWrites(folded, lost, now);
    if (writes.size === 0) return;
    const folders = this.#of(folded.set);
    for (const [path, write] of writes) folders.pending.set(path, write);
    folders.from = from;
    // How long they waited is not known: they go at the end of this message.
    folders.since = Number.NEGATIVE_INFINITY;
  }
}

/**
 * Names in the status the segments a replay could not read (`folderWritesLost`), joined with those named before:
 * `tidemark status` shows them until a resync writes every folder again.
 */
export function noteLostFolderWrites(status: SetStatus, lost: readonly { segment: number; error: Error }[], now: Date): void {
  const [first] = lost;
  const last = lost.at(-1);
  if (!first || !last) return;
  const before = status.folderWritesLost;
  // A replay after a failed message reads the same segments again: overlapping ranges are not counted twice.
  const overlaps = before !== undefined && before.first <= last.segment && first.segment <= before.last;
  status.folderWritesLost = {
    at: now.toISOString(),
    first: Math.min(before?.first ?? first.segment, first.segment),
    last: Math.max(before?.last ?? last.segment, last.segment),
    unreadable: before === undefined ? lost.length : overlaps ? Math.max(before.unreadable, lost.length) : before.unreadable + lost.length,
    error: first.error.message,
  };
}

/** Folder objects written at once when they go. */
const FLUSH_CONCURRENCY = 32;
