// Writes a recovery point (a list of entries and a way to read each file's
// bytes) into a folder. Whatever can be written is; every entry that cannot
// is reported with why, and the rest goes on. Nothing is ever written through
// a symlink: every folder on an entry's way is lstat'ed and must be a real
// folder inside the restore folder, and the recovery point's own symlinks are
// made last, after no entry may lie below one. Snapshots (restore.ts) and
// point-in-time restores both write through here. A file's zero ranges are
// left as holes (dataRuns): a sparse file comes back sparse. A file's
// set-uid and set-gid bits are dropped (restoredMode): owners are not kept.

import { createHash, randomBytes } from "node:crypto";
import { chmod, link, lstat, lutimes, mkdir, open, readdir, realpath, rename, rm, statfs, symlink, utimes } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { mapConcurrent } from "../contract/async.ts";
import { isTransientAwsError } from "../lambdas/target/index.ts";
import { escapeControl, formatBytes } from "./format.ts";
import { writevFully } from "./full-write.ts";
import { openNewFile, type NewFile } from "./temp-file.ts";
import { parentOf, setPathProblem } from "../contract/paths.ts";
import type { Progress } from "./operations.ts";

export class RestoreError extends Error {
  override name = "RestoreError";
}

/** One entry of a recovery point, as a snapshot manifest (or a point-in-time history) lists it. */
export interface RecoveryEntry {
  readonly path: string;
  readonly kind: "file" | "dir" | "symlink";
  readonly size: number;
  /** Permission bits (0o7777 mask). */
  readonly mode: number;
  /** Nanoseconds since the epoch, decimal. */
  readonly mtimeNs: string;
  /** Files: sha256 of the content (checked as it is written). */
  readonly sha256?: string;
  /** Symlinks: the target, written as it is (never followed). */
  readonly link?: string;
  /** Files that were hard links of one another on the source share a group. */
  readonly linkGroup?: string;
}

/** A file's bytes: whole, or as a stream of chunks. */
export type EntryContent = Uint8Array | AsyncIterable<Uint8Array>;

/** What a restore writes from: its entries, and where each file's bytes come from. */
export interface RecoveryPoint<E extends RecoveryEntry = RecoveryEntry> {
  readonly entries: readonly E[];
  /** The bytes of a file entry; throws (with why) when they cannot be had. */
  content(entry: E): Promise<EntryContent>;
  /**
   * The bytes content(entry) gave were not the entry's sha256: true when the next content(entry) reads them from
   * elsewhere (the file is then written again from its start), false when there is nowhere else.
   */
  reread?(entry: E): Promise<boolean>;
  /**
   * The writer wrote a chunk content() gave into its file and holds it no more: its memory may be reused. Told only
   * after the write returned, and at most once a chunk; a chunk of a failed write is never told.
   */
  written?(chunk: Uint8Array): void;
  /** The restore is over (written, failed or stopped): what the point kept for reuse (given-back bodies) may go. */
  finished?(): void;
  /** Entries the point holds but cannot restore (named as failures, and never removed as extra by --delete). */
  readonly unrestorable?: readonly RestoreFailure[];
}

export interface WriteOptions {
  /** Write into a folder that is not empty. */
  readonly force?: boolean;
  /** With force: remove what the recovery point does not hold. */
  readonly delete?: boolean;
  readonly onProgress?: (progress: Progress) => void;
  /** Stops the restore (temp files removed) when aborted. */
  readonly signal?: AbortSignal;
  /** When the restore gives up on a target that stopped answering (GIVE_UP's values unless set). */
  readonly giveUp?: { readonly targetFailures?: number; readonly noProgressMs?: number };
  /** Give files their set-uid and set-gid bits too (restoredMode): for an operator who knows the restored tree's owners are right. */
  readonly keepSetId?: boolean;
}

/** Set-uid and set-gid: a file with them runs as its owner or its group. */
const SET_ID_BITS = 0o6000;

/** Files named in a report's setIdDropped (its count says how many there were). */
export const SET_ID_NAMED = 10;

/** Why a restore drops a file's set-uid and set-gid bits, as its report says it. */
export const SET_ID_REASON =
  "owners are not kept: restored files belong to the user running the restore (root when run as root), so a file set-uid or set-gid on the source would run as that user, not as its owner there";

/**
 * The mode a restore gives an entry. Owners are not kept, so a file's set-uid and set-gid bits are dropped (as cp -p
 * and tar do when they cannot keep the owner): a file set-uid to nobody on the source would come back set-uid root. A
 * folder keeps them (set-gid only makes new names take its group), and the sticky bit stays everywhere.
 */
export function restoredMode(entry: Pick<RecoveryEntry, "kind" | "mode">, keepSetId = false): number {
  return entry.kind === "file" && !keepSetId ? entry.mode & ~SET_ID_BITS : entry.mode;
}

/**
 * A restore gives up on its target, instead of failing each file left one by one (32 at a time, each after its
 * request's time-out: hours for a large set), when `targetFailures` files in a row failed on the target (no answer,
 * a dropped connection, a 5xx: errors a retry could have cured) with none written between them, or when a file
 * fails so after `noProgressMs` without a byte written. An answer that is an answer (a missing object, bytes that
 * are not the file's) is the file's own failure and counts for neither.
 */
export const GIVE_UP = { targetFailures: 2 * 32, noProgressMs: 5 * 60_000 } as const;

/** A restore stopped as a whole (the target stopped answering, the disk is full): what was written stays; the rest needs a re-run. */
export class RestoreStoppedError extends Error {
  // Printed as a user's error (one line, no stack) by the CLI, as any RestoreError.
  override name = "RestoreError";
}

const LOCAL_STOPS: Readonly<Record<string, string>> = { ENOSPC: "is full", EDQUOT: "is over its disk quota", EROFS: "is read-only" };

/** The code of an error (or of its causes) that stops every write alike: a full disk, a quota, a read-only file system. */
function localStop(error: unknown): string | undefined {
  for (let e = error as { code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    if (typeof e.code === "string" && e.code in LOCAL_STOPS) return e.code;
  }
  return undefined;
}

/** A failure of the target rather than an answer from it: one a retry could cure (no answer, a dropped connection, a 5xx). */
function targetFailure(error: unknown): boolean {
  const name = (error as { name?: unknown } | undefined)?.name;
  return isTransientAwsError(error) || (typeof name === "string" && /SlowTransfer|HttpProtocolError|HttpConnectionError/.test(name));
}

export interface RestoreFailure {
  readonly path: string;
  readonly reason: string;
}

export interface WriteReport {
  readonly to: string;
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
  /** Files written as a hard link of another file of their group. */
  readonly hardLinks: number;
  readonly bytes: number;
  /** Entries that could not be written, with why. */
  readonly failures: RestoreFailure[];
  /** What the folder held that the recovery point does not (left alone without --delete). */
  readonly extra: string[];
  /** Extra entries removed (--delete). */
  readonly deleted: string[];
  /** Files written without the set-uid / set-gid bits the recovery point gives them (restoredMode); absent when none. */
  readonly setIdDropped?: SetIdDropped;
}

/** Files restored without their set-uid / set-gid bits: not a failure, said so that no one looks for them in vain. */
export interface SetIdDropped {
  readonly count: number;
  /** The first SET_ID_NAMED of them, by path. */
  readonly paths: string[];
  readonly reason: string;
}

/** The line a restore's (or drill's) summary says setIdDropped in. */
export function setIdDroppedLine(dropped: SetIdDropped): string {
  const names = dropped.paths.map((path) => escapeControl(JSON.stringify(path))).join(", ");
  const more = dropped.count > dropped.paths.length ? ` and ${dropped.count - dropped.paths.length} more` : "";
  return `set-uid/set-gid bits not restored on ${dropped.count} file(s) (${names}${more}): ${dropped.reason}`;
}

/** Bytes gathered before a write to the file. */
const WRITE_BYTES = 1024 * 1024;

/**
 * A file's zero ranges are left as holes, not written (a sparse file, a VM image or a database with holes, comes back
 * as sparse as the recovery point allows, not fully allocated): its bytes are cut at these boundaries of their offset
 * in the file, and a zero piece of at least MIN_HOLE_BYTES is skipped. A shorter one (cut by a chunk's edge) is
 * written: a write split for it would cost more than the disk it saves. The file is new or emptied when written, so a
 * hole reads as the zeros it stands for.
 */
const HOLE_BLOCK_BYTES = 64 * 1024;
const MIN_HOLE_BYTES = 4096;
const ZEROS = Buffer.alloc(HOLE_BLOCK_BYTES);

/** Whether bytes[from, to) are all zero; data is mostly told by three bytes, without a call. */
function allZero(bytes: Uint8Array, from: number, to: number): boolean {
  if (bytes[from] !== 0 || bytes[to - 1] !== 0 || bytes[(from + to) >>> 1] !== 0) return false;
  return Buffer.from(bytes.buffer, bytes.byteOffset + from, to - from).equals(ZEROS.subarray(0, to - from));
}

/** The runs of `buffers` (the file's bytes from `position` on) to write, each at its offset; what lies between them is zeros left as holes. */
export function dataRuns(buffers: readonly Uint8Array[], position: number): { at: number; buffers: Uint8Array[] }[] {
  const runs: { at: number; buffers: Uint8Array[] }[] = [];
  let run: { at: number; buffers: Uint8Array[] } | undefined;
  let at = position;
  const keep = (buffer: Uint8Array, from: number, to: number, offset: number) => {
    if (!run) runs.push((run = { at: offset, buffers: [] }));
    run.buffers.push(from === 0 && to === buffer.length ? buffer : buffer.subarray(from, to));
  };
  for (const buffer of buffers) {
    // [kept, from) of this buffer is data not yet in a run.
    let kept = 0;
    let from = 0;
    while (from < buffer.length) {
      const to = Math.min(buffer.length, from + HOLE_BLOCK_BYTES - (at % HOLE_BLOCK_BYTES));
      if (to - from >= MIN_HOLE_BYTES && allZero(buffer, from, to)) {
        if (from > kept) keep(buffer, kept, from, at - (from - kept));
        run = undefined;
        kept = to;
      }
      at += to - from;
      from = to;
    }
    if (buffer.length > kept) keep(buffer, kept, buffer.length, at - (buffer.length - kept));
  }
  return runs;
}

/**
 * Files up to this size are written in one write (WRITE_BYTES), opened O_DSYNC: the write returns once the bytes are
 * on disk, so they need no fsync (one system call and thread-pool hand-off fewer a small file). Larger ones are
 * written in several writes and fsynced once: each write of an O_DSYNC file would wait for the disk.
 */
export const DURABLE_WRITE_BYTES = WRITE_BYTES;

/** Files written at once: a small file's time is mostly its GET's round trip. */
export const WRITE_CONCURRENCY = 32;

/**
 * Folders synced at once at the end of a restore, where nothing else overlaps them: each fsync of a folder waits for
 * its blocks and a disk flush (the bench's 51, one at a time: the last 0.04-0.11 s of its wall, bench/notes.md).
 */
export const FOLDER_SYNC_CONCURRENCY = 8;

/** Why one entry could not be written. */
class EntryError extends Error {
  override name = "EntryError";
}

/** The bytes read are not the entry's sha256: written again when the recovery point can read them elsewhere (reread). */
class ContentHashError extends EntryError {
  override name = "ContentHashError";
}

/**
 * mtimeNs as the seconds utimes takes. A double near 2^31 seconds resolves
 * about a quarter of a microsecond and the conversion truncates: the middle
 * of the microsecond lands on it. The microsecond is the one at or before the
 * time (floor, as drill compares), so a time before 1970 keeps its second too
 * (-1 s comes back as -0.9999995 s, not -1.0000005 s: 23:59:59, not :58).
 * As a numeric string: Node's utimes takes a negative number as "now", a
 * string before 1970 as it is.
 */
function seconds(mtimeNs: string): string {
  return String((Number(floorMicros(mtimeNs)) + 0.5) / 1e6);
}

/** The microsecond at or before a time (floor: before 1970 too): what restore sets, and what drill compares. */
export function floorMicros(ns: bigint | string): bigint {
  const n = BigInt(ns);
  return n >= 0n ? n / 1000n : (n - 999n) / 1000n;
}

function reasonOf(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    // A system error's message repeats the absolute path; its code and what it means are enough.
    if (code && (error as NodeJS.ErrnoException).syscall) return `${code}: ${error.message.split(",")[0]?.replace(`${code}: `, "") ?? code}`;
    return error.message;
  }
  return String(error);
}

async function isEmptyDir(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length === 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw error;
  }
}

/**
 * Short temp names in the same folder (a 255-byte name plus a suffix would not fit NAME_MAX): one random prefix a
 * restore and a count, not random bytes a file; each is created exclusively (wx), so a clash fails, never overwrites.
 */
function tempNames(): () => string {
  const prefix = `.tm-${randomBytes(6).toString("hex")}-`;
  let count = 0;
  return () => `${prefix}${(count++).toString(36)}`;
}

interface Planned<E extends RecoveryEntry> {
  readonly dirs: E[];
  /** Files by the group they are written as: hard links of one file, or a file alone. */
  readonly fileGroups: E[][];
  readonly links: E[];
  readonly failures: RestoreFailure[];
  readonly known: Set<string>;
}

/**
 * Sorts the entries by kind and refuses those that cannot be written safely:
 * bad paths, a path listed twice, anything below a path the recovery point
 * holds as a file or symlink (it would be written through the link).
 */
function plan<E extends RecoveryEntry>(entries: readonly E[]): Planned<E> {
  const failures: RestoreFailure[] = [];
  const kinds = new Map<string, RecoveryEntry["kind"]>();
  const accepted: E[] = [];
  for (const entry of entries) {
    const problem = setPathProblem(entry.path);
    if (problem) failures.push({ path: entry.path, reason: `not a name this restore writes: ${problem}` });
    else if (kinds.has(entry.path)) failures.push({ path: entry.path, reason: "listed twice in the recovery point; the first one was kept" });
    else if (entry.kind === "file" && entry.sha256 === undefined) failures.push({ path: entry.path, reason: "a file without a sha256 in the recovery point" });
    else if (entry.kind === "symlink" && !entry.link) failures.push({ path: entry.path, reason: "a symlink without a target in the recovery point" });
    else {
      kinds.set(entry.path, entry.kind);
      accepted.push(entry);
    }
  }
  const dirs: E[] = [];
  const links: E[] = [];
  const groups = new Map<string, E[]>();
  for (const entry of accepted) {
    let blocker: string | undefined;
    for (let parent = parentOf(entry.path); parent !== undefined; parent = parentOf(parent)) {
      const kind = kinds.get(parent);
      if (kind !== undefined && kind !== "dir") blocker = `${parent} (a ${kind})`;
    }
    if (blocker) {
      failures.push({ path: entry.path, reason: `lies below ${blocker} in the recovery point; nothing is written through it` });
      continue;
    }
    if (entry.kind === "dir") dirs.push(entry);
    else if (entry.kind === "symlink") links.push(entry);
    else {
      // Only members that agree on content, mode and mtime are one file on disk: a stale group id links nothing wrong.
      const key = entry.linkGroup !== undefined ? `${entry.linkGroup}\0${entry.sha256}\0${entry.mode}\0${entry.mtimeNs}` : `\0${entry.path}`;
      const group = groups.get(key);
      if (group) group.push(entry);
      else groups.set(key, [entry]);
    }
  }
  // Parents before children.
  dirs.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { dirs, fileGroups: [...groups.values()], links, failures, known: new Set(entries.map((e) => e.path)) };
}

/** Writes a recovery point into `to`; returns what was written and every entry that was not. */
export async function writeRecoveryPoint<E extends RecoveryEntry>(point: RecoveryPoint<E>, to: string, options: WriteOptions = {}): Promise<WriteReport> {
  const wasEmpty = await isEmptyDir(to);
  if (!options.force && !wasEmpty) {
    throw new RestoreError(`${to} is not empty; restore into an empty folder, or pass --force to write over what is there`);
  }
  await mkdir(to, { recursive: true });
  const root = await realpath(to);
  const planned = plan(point.entries);
  // Stopped by the caller (options.signal) or by the restore itself giving up (stop).
  const stopper = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stopper.signal]) : stopper.signal;
  const writer = new TreeWriter(root, signal, wasEmpty, options.keepSetId === true);
  const failures = [...planned.failures, ...(point.unrestorable ?? [])];
  for (const { path } of point.unrestorable ?? []) planned.known.add(path);
  const totalFiles = planned.fileGroups.reduce((sum, group) => sum + group.length, 0);
  const totalBytes = planned.fileGroups.reduce((sum, group) => sum + group.reduce((s, e) => s + e.size, 0), 0);
  let files = 0;
  let hardLinks = 0;
  // Files written without their set-uid / set-gid bits.
  const setIdDropped: string[] = [];
  let bytes = 0;
  let done = 0;
  // Bytes written so far, of files under way too: a large file moves the bar as it streams.
  let streamed = 0;
  // Files failed on the target since the last one written, and when a byte was last written.
  const giveUp = { ...GIVE_UP, ...options.giveUp };
  let targetFailures = 0;
  let progressAt = Date.now();
  const progressed = () => {
    targetFailures = 0;
    progressAt = Date.now();
  };
  // Why the restore gave up, said once the writes in flight have settled (the counts are the final ones then).
  let stopped: (() => Promise<string>) | undefined;
  const stop = (why: () => Promise<string>) => {
    if (signal.aborted) return;
    stopped = why;
    stopper.abort();
  };
  const stopOnDisk = (code: string, error: unknown) =>
    stop(async () => {
      const free = await statfs(root).then(
        (fs) => `, ${formatBytes(fs.bavail * fs.bsize)} free`,
        () => "",
      );
      const needed = code === "EROFS" ? "" : `: about ${formatBytes(Math.max(0, totalBytes - bytes))} more is needed${free}`;
      return `restore stopped: the file system under ${root} ${LOCAL_STOPS[code] ?? code} (${reasonOf(error)})${needed}`;
    });
  // Once aborted, every entry left fails fast and quietly; the restore throws when all writes have settled. A full
  // disk stops it at once; a target that stopped answering stops it after GIVE_UP's failures.
  const fail = (path: string, error: unknown) => {
    if (signal.aborted) return;
    const code = localStop(error);
    if (code) {
      stopOnDisk(code, error);
      return;
    }
    failures.push({ path, reason: reasonOf(error) });
    if (!targetFailure(error)) return;
    targetFailures += 1;
    const failed = targetFailures;
    const idle = Math.round((Date.now() - progressAt) / 1000);
    if (failed >= giveUp.targetFailures) stop(() => Promise.resolve(`restore stopped: the target failed ${failed} files in a row with none written between them (the last: ${reasonOf(error)})`));
    else if (Date.now() - progressAt >= giveUp.noProgressMs) stop(() => Promise.resolve(`restore stopped: the target failed ${failed} files in a row and nothing was written for ${idle} s (the last: ${reasonOf(error)})`));
  };
  const report = () => options.onProgress?.({ phase: "restore", files: done, totalFiles, bytes: streamed, totalBytes });
  const written = { dirs: 0, symlinks: 0 };
  const dirsMade: E[] = [];
  try {
    // Folders first (writable while filled), parents before children.
    for (const dir of planned.dirs) {
      try {
        await writer.dir(dir);
        dirsMade.push(dir);
      } catch (error) {
        fail(dir.path, error);
      }
    }
    const chunkWritten = point.written ? (chunk: Uint8Array) => point.written?.(chunk) : undefined;
    // Largest first: a large file's parts stream beside the many small files' GETs, not alone after them.
    const bySize = [...planned.fileGroups].sort((a, b) => (b[0]?.size ?? 0) - (a[0]?.size ?? 0));
    await mapConcurrent(bySize, WRITE_CONCURRENCY, async (group) => {
      // The first member written holds the bytes; the others become links to it.
      let first: E | undefined;
      for (const entry of group) {
        try {
          if (first && (await writer.hardLink(first, entry))) hardLinks += 1;
          else {
            // Awaited before the sum: `bytes += await …` would add to the value read before other files' writes finished.
            let partial = 0;
            const onBytes = (n: number) => {
              partial += n;
              streamed += n;
              if (n > 0) progressAt = Date.now();
              report();
            };
            const reread = point.reread ? () => point.reread?.(entry) ?? Promise.resolve(false) : undefined;
            const written = await writer.file(entry, () => point.content(entry), { onBytes, ...(reread ? { reread } : {}), ...(chunkWritten ? { written: chunkWritten } : {}) }).catch((error: unknown) => {
              // A file not restored takes its bytes off the bar again.
              streamed -= partial;
              throw error;
            });
            bytes += written;
            first ??= entry;
          }
          files += 1;
          if (restoredMode(entry, options.keepSetId) !== entry.mode) setIdDropped.push(entry.path);
          progressed();
        } catch (error) {
          fail(entry.path, error);
        }
        done += 1;
        report();
      }
    });
    for (const entry of planned.links) {
      try {
        await writer.symlink(entry);
        written.symlinks += 1;
      } catch (error) {
        fail(entry.path, error);
      }
    }
    // The new names are durable once their folders are synced: each folder once, after all its names are in, and
    // before the folder modes are set (a folder the owner cannot read or enter could not be opened to sync it).
    for (const { path, error } of await writer.syncFolders()) fail(path, new EntryError(`its folder could not be synced to disk: ${reasonOf(error)}`));
    // Folder modes and mtimes last, deepest first: filling a folder moves its mtime.
    for (const dir of dirsMade.reverse()) {
      try {
        await writer.finishDir(dir);
        written.dirs += 1;
      } catch (error) {
        fail(dir.path, error);
      }
    }
  } finally {
    point.finished?.();
    await writer.removeTemps();
  }
  options.signal?.throwIfAborted();
  failures.push(...writer.mtimeProblems);
  if (stopped) {
    const written = `${files} of ${totalFiles} files (${formatBytes(bytes)} of ${formatBytes(totalBytes)}) were written to ${root} and stay, no temp files`;
    throw new RestoreStoppedError(`${await stopped()}; ${written}; re-run the restore with --force to write the rest`);
  }
  // What the point lacks is left alone, folders whole: a folder the source held and never replicated is not "extra".
  const extra = wasEmpty ? [] : await extraEntries(root, planned.known, new Set((point.unrestorable ?? []).map(({ path }) => path)));
  const deleted: string[] = [];
  if (options.delete) {
    for (const path of extra) {
      try {
        await rm(join(root, path), { recursive: true, force: true });
        deleted.push(path);
      } catch (error) {
        fail(path, new EntryError(`extra entry not removed: ${reasonOf(error)}`));
      }
    }
  }
  report();
  failures.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  setIdDropped.sort();
  const dropped = setIdDropped.length > 0 ? { setIdDropped: { count: setIdDropped.length, paths: setIdDropped.slice(0, SET_ID_NAMED), reason: SET_ID_REASON } } : {};
  return { to: root, files, dirs: written.dirs, symlinks: written.symlinks, hardLinks, bytes, failures, extra: options.delete ? [] : extra, deleted, ...dropped };
}

/** Paths in the folder the recovery point does not hold: the topmost of each, symlinks never followed, nothing below `whole`. */
export async function extraEntries(root: string, known: ReadonlySet<string>, whole: ReadonlySet<string> = new Set()): Promise<string[]> {
  const extra: string[] = [];
  const walk = async (dir: string) => {
    for (const dirent of await readdir(join(root, dir), { withFileTypes: true })) {
      const path = dir === "" ? dirent.name : `${dir}/${dirent.name}`;
      if (!known.has(path)) extra.push(path);
      else if (dirent.isDirectory() && !whole.has(path)) await walk(path);
    }
  };
  await walk("");
  return extra.sort();
}

/** The writes of one restore, confined to its root. */
/**
 * Makes a folder that files written at once may all need: another write that
 * made it first (EEXIST) is as good, once it proves a real folder (not a
 * symlink or a file put there meanwhile).
 */
async function makeFolder(abs: string, path: string, mode = 0o755): Promise<void> {
  try {
    await mkdir(abs, { mode });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    const st = await lstat(abs);
    if (st.isSymbolicLink()) throw new EntryError(`${path} is a symlink; nothing is written through it`);
    if (!st.isDirectory()) throw new EntryError(`${path} is not a folder`);
  }
}

/** What TreeWriter.file tells as it writes a file. */
interface FileHooks {
  /** Bytes written (negative when a file is written again from its start). */
  readonly onBytes?: (bytes: number) => void;
  /** The bytes read were not the entry's sha256: true when read() now reads them from elsewhere (RecoveryPoint.reread). */
  readonly reread?: () => Promise<boolean>;
  /** A chunk read() gave is written and held no more (RecoveryPoint.written). */
  readonly written?: (chunk: Uint8Array) => void;
}

class TreeWriter {
  readonly #root: string;
  readonly #signal: AbortSignal | undefined;
  /** Folders (relative) checked to be real folders, not symlinks. */
  readonly #checked = new Set<string>([""]);
  /** Temp files not yet renamed into place. */
  readonly #temps = new Set<string>();
  /** Folders (relative) that got new names (a file, link or folder renamed or made there): synced once at the end. */
  readonly #named = new Set<string>();
  /** The folder was empty: nothing is at an entry's name but what this restore wrote there (a path is listed once). */
  readonly #fresh: boolean;
  readonly #tempName = tempNames();
  /** Entries written whose mtime the file system refused: kept, and named among the restore's failures. */
  readonly mtimeProblems: RestoreFailure[] = [];
  /** WriteOptions.keepSetId. */
  readonly #keepSetId: boolean;

  constructor(root: string, signal: AbortSignal | undefined, fresh: boolean, keepSetId: boolean) {
    this.#root = root;
    this.#signal = signal;
    this.#fresh = fresh;
    this.#keepSetId = keepSetId;
  }

  /**
   * The absolute path of an entry, once every folder on its way is a real
   * folder (missing ones are made); a symlink or a file on the way fails the entry.
   */
  async #place(path: string): Promise<{ abs: string; dir: string }> {
    this.#signal?.throwIfAborted();
    const parent = parentOf(path) ?? "";
    if (!this.#checked.has(parent)) {
      let walked = "";
      for (const name of parent.split("/")) {
        walked = walked === "" ? name : `${walked}/${name}`;
        if (this.#checked.has(walked)) continue;
        const abs = join(this.#root, walked);
        const st = await lstat(abs).catch((error: NodeJS.ErrnoException) => {
          if (error.code === "ENOENT") return undefined;
          throw error;
        });
        if (!st) {
          await makeFolder(abs, walked);
          this.#named.add(parentOf(walked) ?? "");
        }
        else if (st.isSymbolicLink()) throw new EntryError(`${walked} is a symlink; nothing is written through it`);
        else if (!st.isDirectory()) throw new EntryError(`${walked} is not a folder`);
        this.#checked.add(walked);
      }
    }
    const dir = join(this.#root, parent);
    return { abs: join(this.#root, path), dir };
  }

  #temp(dir: string): string {
    const temp = join(dir, this.#tempName());
    this.#temps.add(temp);
    return temp;
  }

  async #settle(temp: string, target: string): Promise<void> {
    const existing = this.#fresh ? undefined : await lstat(target).catch(() => undefined);
    // A folder where the recovery point has a file or link: the recovery point wins (the caller asked for --force).
    if (existing?.isDirectory()) await rm(target, { recursive: true, force: true });
    await rename(temp, target);
    this.#temps.delete(temp);
    this.#named.add(relative(this.#root, dirname(target)).split(sep).join("/"));
  }

  /** fsyncs every folder that got new names, once each (several at once); the folders that could not be synced, and why. */
  async syncFolders(): Promise<{ path: string; error: unknown }[]> {
    const failed: { path: string; error: unknown }[] = [];
    await mapConcurrent([...this.#named].sort(), FOLDER_SYNC_CONCURRENCY, async (path) => {
      try {
        const handle = await open(join(this.#root, path), "r");
        try {
          await handle.sync();
        } finally {
          await handle.close();
        }
      } catch (error) {
        // A filesystem that cannot sync a folder (EINVAL) has nothing more to make durable.
        if ((error as NodeJS.ErrnoException).code !== "EINVAL") failed.push({ path: path === "" ? "." : path, error });
      }
    });
    this.#named.clear();
    return failed;
  }

  async #discard(temp: string): Promise<void> {
    await rm(temp, { force: true });
    this.#temps.delete(temp);
  }

  async dir(entry: RecoveryEntry): Promise<void> {
    const { abs } = await this.#place(entry.path);
    const existing = await lstat(abs).catch(() => undefined);
    // A symlink or file where the recovery point has a folder is replaced (rm on a link removes the link, not its target).
    if (existing && !existing.isDirectory()) await rm(abs, { force: true });
    if (!existing?.isDirectory()) {
      await makeFolder(abs, entry.path, 0o700);
      this.#named.add(parentOf(entry.path) ?? "");
    }
    // While filled: its owner's rwx, never its group's or others' write (nor sticky), which finishDir gives once every
    // name in it is written: until then no one else can swap a subfolder made and checked here for a symlink, or put
    // names where the restore writes. Set-gid stays, so that new names take the folder's group as on the source.
    await chmod(abs, (entry.mode & 0o2755) | 0o700);
    this.#checked.add(entry.path);
  }

  async finishDir(entry: RecoveryEntry): Promise<void> {
    const abs = join(this.#root, entry.path);
    await chmod(abs, entry.mode);
    await this.#setTimes(entry, (at) => utimes(abs, at, at));
  }

  /**
   * Sets an entry's mtime. The file system may refuse a time the contract takes (ext4 keeps 1901 to 2446; utimes
   * fails EINVAL on some beyond): the entry is kept (its content is proven) and named in mtimeProblems.
   */
  async #setTimes(entry: RecoveryEntry, set: (at: string) => Promise<void>): Promise<void> {
    try {
      await set(seconds(entry.mtimeNs));
    } catch (error) {
      this.mtimeProblems.push({ path: entry.path, reason: `mtime not settable: ${reasonOf(error)} (mtimeNs ${entry.mtimeNs}); its content is restored` });
    }
  }

  /**
   * Writes a file through a temp name, checking its size and sha256 as it streams; returns the bytes written. Bytes
   * that are not the entry's never reach its name: the temp file is removed and the error names the file.
   */
  async file(entry: RecoveryEntry, read: () => Promise<EntryContent>, hooks: FileHooks = {}): Promise<number> {
    const { onBytes, reread, written } = hooks;
    const { abs, dir } = await this.#place(entry.path);
    const temp = this.#temp(dir);
    const mode = restoredMode(entry, this.#keepSetId);
    try {
      // Made with the entry's read and execute bits (and its owner's write): most files need no chmod after. A file
      // written in one write (DURABLE_WRITE_BYTES) is opened O_DSYNC: that write returns once its bytes are on disk.
      const handle = await openNewFile(temp, mode, { durableWrites: entry.size > 0 && entry.size <= DURABLE_WRITE_BYTES });
      try {
        let counted = 0;
        const count = (n: number) => {
          counted += n;
          onBytes?.(n);
        };
        // Whether the file's size was set by a truncate (not covered by durable writes).
        let truncated: boolean;
        try {
          truncated = await this.#stream(handle, entry, read, count, written);
        } catch (error) {
          if (!(error instanceof ContentHashError) || !(await reread?.())) throw error;
          // The source read first turned out not to hold the file: written again from the start, from the next source.
          await handle.truncate(0);
          onBytes?.(-counted);
          await this.#stream(handle, entry, read, onBytes, written);
          truncated = true;
        }
        // Durable before it is named, through the handle that wrote it, before any mode the creating open could not
        // give is set: by its durable writes, or else fsynced.
        if (!handle.durableWrites || truncated) await handle.sync();
        // The checks above hashed the bytes read; this one proves the disk holds all of them, and the mode it has.
        const onDisk = await handle.stat();
        if (onDisk.size !== entry.size) throw new EntryError(`the disk holds ${onDisk.size} of its ${entry.size} bytes after writing (full disk or quota?); not restored`);
        // Set where the creating open could not (a write bit beyond the owner's, set-id or sticky bits, what the umask took, 000).
        if (onDisk.mode !== mode) await handle.chmod(mode);
        // Set through the handle: the rename keeps it.
        await this.#setTimes(entry, (at) => handle.utimes(at, at));
      } finally {
        await handle.close();
      }
      await this.#settle(temp, abs);
      return entry.size;
    } catch (error) {
      await this.#discard(temp);
      throw error;
    }
  }

  /** Streams the content read into handle from its start, checking its size and sha256; true when its size was set by a truncate (a hole at its end). */
  async #stream(handle: NewFile, entry: RecoveryEntry, read: () => Promise<EntryContent>, onBytes?: (bytes: number) => void, written?: (chunk: Uint8Array) => void): Promise<boolean> {
    const hash = createHash("sha256");
    let size = 0;
    // Read once the temp file is open: a content stream is never left unread by a failure before it.
    const content = await read();
    const chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array> = content instanceof Uint8Array ? [content] : content;
    // Chunks as they arrive from the network are small: written some 1 MiB at once, one system call each.
    const pending: Uint8Array[] = [];
    let pendingBytes = 0;
    let position = 0;
    // Where the last byte written ends: zeros after it (a hole at the file's end) are made by setting its size.
    let end = 0;
    const flush = async () => {
      // A short write (full disk, quota, file-size limit) is written on from where it stopped, or fails.
      for (const run of dataRuns(pending, position)) end = run.at + (await writevFully(handle, run.buffers, run.at, entry.path));
      position += pendingBytes;
      if (written) for (const chunk of pending) written(chunk);
      onBytes?.(pendingBytes);
      pending.length = 0;
      pendingBytes = 0;
    };
    for await (const chunk of chunks) {
      this.#signal?.throwIfAborted();
      size += chunk.length;
      if (size > entry.size) throw new EntryError(`the content read is longer than the recovery point's ${entry.size} bytes; not restored`);
      hash.update(chunk);
      pending.push(chunk);
      pendingBytes += chunk.length;
      if (pendingBytes >= WRITE_BYTES) await flush();
    }
    if (pendingBytes > 0) await flush();
    if (size !== entry.size) throw new EntryError(`the content read holds ${size} bytes, the recovery point's ${entry.size}; not restored`);
    const sha256 = hash.digest("hex");
    if (sha256 !== entry.sha256) throw new ContentHashError(`the content read has sha256 ${sha256}, the recovery point's ${entry.sha256 ?? "?"} (altered in the bucket?); not restored`);
    if (end >= size) return false;
    await handle.truncate(size);
    return true;
  }

  /** Makes entry a hard link of first (written already); false when the filesystem cannot link them (the caller writes it whole). */
  async hardLink(first: RecoveryEntry, entry: RecoveryEntry): Promise<boolean> {
    const { abs, dir } = await this.#place(entry.path);
    const temp = this.#temp(dir);
    try {
      await link(join(this.#root, first.path), temp);
    } catch (error) {
      this.#temps.delete(temp);
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EXDEV" || code === "EMLINK" || code === "EPERM" || code === "ENOTSUP") return false;
      throw error;
    }
    try {
      await this.#settle(temp, abs);
      return true;
    } catch (error) {
      await this.#discard(temp);
      throw error;
    }
  }

  async symlink(entry: RecoveryEntry): Promise<void> {
    const { abs, dir } = await this.#place(entry.path);
    const temp = this.#temp(dir);
    try {
      await symlink(entry.link ?? "", temp);
      await this.#setTimes(entry, (at) => lutimes(temp, at, at));
      await this.#settle(temp, abs);
    } catch (error) {
      await this.#discard(temp);
      throw error;
    }
  }

  /** Removes temp files a failure or an abort left (each write removes its own; this is the backstop). */
  async removeTemps(): Promise<void> {
    for (const temp of this.#temps) await rm(temp, { force: true });
    this.#temps.clear();
  }
}
