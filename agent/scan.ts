// Barrier scan (DESIGN 2): stat every entry of a set against the index and
// journal whatever differs. Watcher events are only hints; this is the truth.
// It walks one directory at a time and reads the index one directory at a
// time, so memory stays flat on large trees.

import { rm } from "node:fs/promises";
import { join } from "node:path";
import { mapConcurrent } from "../contract/async.ts";
import { BLOCK_SIZE, MAX_INLINE_DECODED_BYTES } from "../contract/wire.ts";
import { specialFileProblem, unreadableProblem, unreplicableName } from "./skipped-names.ts";
import { capture, deletesFor, stampIfUnknown, unchangedInIndex, type CaptureOptions, type CaptureResult } from "./capture.ts";
import { readFolder, type FolderEntry } from "./folder-stats.ts";
import { resolveSetRoot } from "./set-files.ts";
import { changeBytes, type Change, type Journal } from "./journal.ts";
import { throwIfInterrupted } from "./interrupt.ts";
import { isExcluded, type SetSpec } from "./set-spec.ts";

export interface ScanReport {
  /** Entries looked at. */
  entries: number;
  /** Changes journaled. */
  changes: number;
  /** Bytes of content journaled (a delta counts its blocks). */
  bytes: number;
  /** Names that cannot be replicated (e.g. a backslash in a name), with why. */
  skipped: { path: string; reason: string }[];
  /** The scan stopped early (journal full); entries it did not reach were not compared. */
  stopped?: boolean;
  /**
   * Files whose content differed from the index behind an unchanged size, mtime and mode (journaled by this scan):
   * how many, and the first CHANGED_BEHIND_STAT_NAMED of them (a tree rewritten whole would be millions).
   */
  changedBehindStat?: { count: number; paths: string[] };
  /**
   * A file of at least READING_NAMED_BYTES being read now (the last such read to begin, when several run), so that a
   * scan's progress names a long read instead of standing still on its count of files.
   */
  reading?: { path: string; size: number };
}

/** From this size a file's read is named in the scan's progress (ScanReport.reading). */
export const READING_NAMED_BYTES = 64 * 1024 * 1024;

/**
 * Journals in chunks of this many changes or bytes of content, across
 * directories: each transaction is a synchronous fsync on the agent's thread,
 * so one per directory of a tree of small folders held up sending. Chunks
 * bound both a transaction and what waits in memory: a folder's captures are
 * added 500 at a time, so a transaction holds fewer than twice APPEND_CHUNK.
 */
const APPEND_CHUNK = 500;
/**
 * A scan's first transaction closes at this many changes, and each next one at twice as many, up to APPEND_CHUNK: the
 * sender (and the target) start on the first files while the rest are read, instead of waiting for a full chunk of
 * captures (an initial mirror's target sat idle for the agent's first 500 files).
 */
const FIRST_APPEND_CHUNK = 64;
const APPEND_BYTES = 8 * 1024 * 1024;
/** Files read at once: enough to keep the disk and the thread pool busy, few enough to bound memory. */
const CAPTURE_CONCURRENCY = 16;
/** Folders whose listing and lstats are read ahead of the scan, on the folder-stats thread. */
const READ_AHEAD = 8;
/**
 * Files too large to travel inline (each is spooled, staged and checked on the target on its own) are captured once
 * the rest of the scan is journaled, up to this many held back at once: an initial mirror's first messages then carry
 * small files the target can write at once, and the large ones are read, staged and verified while it does, instead
 * of every later record waiting behind them. The scan's records are the state it found, not a write order.
 */
const DEFERRED_LARGE_FILES = 1_000;
/** Files changed behind an unchanged stat a scan names (it counts them all). */
const CHANGED_BEHIND_STAT_NAMED = 100;

function joinPath(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

export interface ScanOptions extends CaptureOptions {
  /** Where to start: a directory of the set ("" for its root). */
  readonly from?: string;
  /** Called after each directory with the totals so far. */
  readonly onProgress?: (report: Readonly<ScanReport>) => void;
  /**
   * Checked before each directory, with the bytes captured but not yet
   * journaled, and before each captured change with content, with its bytes
   * as nextBytes: true stops the scan early (the journal is full) without
   * that change; a later scan resumes from the index.
   */
  readonly shouldStop?: (unjournaledBytes: number, nextBytes?: number) => boolean;
  /** Files left for later (a large file whose previous version is not sent yet): not captured by this scan. */
  readonly defer?: (path: string) => boolean;
  /** Turns a captured entry's changes into what is journaled (a put of a file that moved here into its rename). */
  readonly renames?: (changes: Change[]) => Promise<Change[]>;
  /** An indexed entry the scan no longer finds: true holds back its deletes to the end of the scan, after the renames of what it held. */
  readonly vanish?: (path: string) => boolean;
  /** Before each append: throws to keep the batch out of the journal (the set's root went bad under the scan: RootHeldError). */
  readonly beforeAppend?: () => Promise<void>;
  /** After each append, with what was journaled and the seqs it got. */
  readonly onJournaled?: (changes: readonly Change[], seqs: readonly number[]) => void;
  /**
   * Only the whole-set scan's (an initial mirror's): called after each append that closed a chunk, not after the
   * subtree's top nor the last one (the caller wakes the sender once the scan ends), with `early` true for the first,
   * small ones. Given, the scan's transactions start at FIRST_APPEND_CHUNK so the sender can start on the first files;
   * without it (a watcher's folder scans, whose batch wakes the sender once at its end) each holds APPEND_CHUNK.
   */
  readonly onChunkJournaled?: (early: boolean) => void;
  /** Checked before each directory, file and chunk of files: once aborted (the agent stops while it starts), the scan journals what it captured and throws StartInterruptedError. */
  readonly signal?: AbortSignal;
}

/** Removes the spool files of captured changes that will not be journaled. */
async function discardCaptured(journal: Journal, changes: readonly Change[]): Promise<void> {
  for (const change of changes) {
    if ((change.op === "put" || change.op === "verify") && "spool" in change.content) await rm(join(journal.spoolDir, change.content.spool), { force: true });
  }
}

/** The sets whose orphaned index entries were swept in this process, by journal. */
const swept = new WeakMap<Journal, Set<string>>();

/** Whether the set's orphans were swept already; marks them swept. */
function orphansSwept(journal: Journal, set: string): boolean {
  const sets = swept.get(journal) ?? new Set<string>();
  swept.set(journal, sets);
  if (sets.has(set)) return true;
  sets.add(set);
  return false;
}

export async function barrierScan(journal: Journal, spec: SetSpec, options: ScanOptions | string = {}): Promise<ScanReport> {
  const { from = "", onProgress, shouldStop, defer, renames, vanish, beforeAppend, onJournaled, onChunkJournaled, signal, onChangedBehindStat, ...given } = typeof options === "string" ? { from: options } : options;
  const changedBehindStat = { count: 0, paths: [] as string[] };
  const report: ScanReport = { entries: 0, changes: 0, bytes: 0, skipped: [], changedBehindStat };
  // A long read (a large file, read again while it keeps changing) is named in the progress before each read.
  const reading = (size: number, path: string) => {
    given.beforeRead?.(size, path);
    if (size < READING_NAMED_BYTES) return;
    report.reading = { path, size };
    onProgress?.(report);
  };
  const captureOptions: CaptureOptions = {
    ...given,
    beforeRead: reading,
    onChangedBehindStat: (path) => {
      changedBehindStat.count += 1;
      if (changedBehindStat.paths.length < CHANGED_BEHIND_STAT_NAMED) changedBehindStat.paths.push(path);
      onChangedBehindStat?.(path);
    },
  };
  const pending: Change[] = [];
  let pendingBytes = 0;
  let chunk = onChunkJournaled ? FIRST_APPEND_CHUNK : APPEND_CHUNK;
  const queue = (changes: readonly Change[]) => {
    for (const change of changes) {
      const bytes = changeBytes(change);
      pending.push(change);
      pendingBytes += bytes;
      report.changes += 1;
      report.bytes += bytes;
    }
  };
  const flush = async () => {
    if (pending.length > 0) {
      await beforeAppend?.();
      const seqs = journal.append(spec.name, pending);
      onJournaled?.(pending.slice(), seqs);
    }
    pending.length = 0;
    pendingBytes = 0;
  };
  const flushWhenFull = async () => {
    if (pending.length < chunk && pendingBytes < APPEND_BYTES) return;
    await flush();
    onChunkJournaled?.(chunk < APPEND_CHUNK);
    chunk = Math.min(chunk * 2, APPEND_CHUNK);
  };

  // Once per set and process, at its first whole scan: entries the index holds below a file or symlink are deleted
  // (nothing can be there; an agent from before set-files.ts could index them). Their parent is never listed as a
  // folder, so no scan would find them gone.
  if (from === "" && !orphansSwept(journal, spec.name)) queue(journal.index.orphans(spec.name).map((path): Change => ({ op: "delete", path })));
  if (from !== "") {
    // Scanning a subtree starts with the subtree's own root.
    const top = await capture(journal, spec, from, captureOptions);
    delete report.reading;
    queue(top.changes);
    await flush();
    if (!top.isDirectory) {
      journal.skippedNames.record(spec.name, from, [], true);
      return report;
    }
  }

  // Entries of one directory are independent: read them in parallel, journal them in the order given.
  // `large`: files held back for their size, each long to read: none is read once the scan is interrupted.
  const captureAll = async (paths: readonly string[], isDirectory: (path: string) => void, large = false) => {
    for (let i = 0, size = chunk; i < paths.length && !report.stopped; i += size, size = chunk) {
      const captured = await mapConcurrent(paths.slice(i, i + size), CAPTURE_CONCURRENCY, async (path): Promise<CaptureResult> =>
        large && signal?.aborted ? { changes: [], isDirectory: false } : capture(journal, spec, path, captureOptions).catch((error: unknown): CaptureResult => {
          // One file the agent may not read is named, not a scan that fails every time (its last good version stays).
          const reason = unreadableProblem(error);
          if (reason === undefined) throw error;
          report.skipped.push({ path, reason });
          return { changes: [], isDirectory: false };
        }),
      );
      // Every read of this chunk ended: none is under way (nothing per file, for a scan of millions).
      if (report.reading) {
        delete report.reading;
        onProgress?.(report);
      }
      for (const [k, result] of captured.entries()) {
        // Result by result, so a rename is claimed only for a change that is queued (one the scan stops before is not).
        const changes = renames ? await renames(result.changes) : result.changes;
        // Change by change, not only between folders: a folder of large files must not carry the backlog past the limit.
        const bytes = changes.reduce((sum, change) => sum + changeBytes(change), 0);
        if (bytes > 0 && shouldStop?.(pendingBytes, bytes)) {
          report.stopped = true;
          await discardCaptured(journal, [...changes, ...captured.slice(k + 1).flatMap((r) => r.changes)]);
          break;
        }
        queue(changes);
        if (result.isDirectory) isDirectory(paths[i + k] ?? "");
      }
      await flushWhenFull();
      // Between chunks too, not only between folders: what was captured is journaled, the rest waits for the next scan.
      if (signal?.aborted) await flush();
      throwIfInterrupted(signal, "scanning the set");
    }
  };

  // Held back too when moves are looked for: a file that can move as a rename (a block or more) is read once the scan
  // knows what vanished, also when it found the file's new folder before the one it left.
  const deferAbove = vanish ? BigInt(BLOCK_SIZE - 1) : BigInt(MAX_INLINE_DECODED_BYTES);
  const dirs = [from];
  // Vanished entries whose deletes wait for the end of the scan (vanish).
  const held: string[] = [];
  // Large files held back until the rest of the scan is journaled (DEFERRED_LARGE_FILES).
  const large: string[] = [];
  // Listings read ahead, by folder; each awaited (or dropped) once the scan reaches it.
  const ahead = new Map<string, Promise<FolderEntry[]>>();
  // Each folder is listed only where it must be, below the root's real path: one replaced by a symlink since its
  // parent's listing, or reached through one, is not followed out of the tree (set-files.ts).
  const realRoot = await resolveSetRoot(spec.root);
  const list = (dir: string) => readFolder(join(spec.root, dir), dir === "" ? undefined : join(realRoot, dir));
  const read = (dir: string): Promise<FolderEntry[]> => {
    const reading = ahead.get(dir) ?? list(dir);
    ahead.delete(dir);
    return reading;
  };
  const readAhead = () => {
    for (const dir of dirs.slice(-READ_AHEAD)) {
      if (ahead.has(dir)) continue;
      const reading = list(dir);
      // A folder that vanished fails when the scan reaches it, not before.
      reading.catch(() => undefined);
      ahead.set(dir, reading);
    }
  };
  while (!report.stopped) {
    if (signal?.aborted) await flush();
    throwIfInterrupted(signal, "scanning the set");
    if (dirs.length === 0) {
      // Every folder is journaled: the large files held back go last (one found to be a folder now is scanned too).
      if (large.length === 0) break;
      // What waits is journaled first, so the sender carries it while the large files are read.
      await flush();
      await captureAll(large.splice(0), (path) => dirs.push(path), true);
      continue;
    }
    if (shouldStop?.(pendingBytes)) {
      report.stopped = true;
      break;
    }
    const dir = dirs.pop() ?? "";
    let listing: FolderEntry[];
    try {
      listing = await read(dir);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // A folder the agent may not list is named, and what was below it stays as it was on the target.
      const unreadable = dir === "" ? undefined : unreadableProblem(error);
      if (unreadable !== undefined) {
        report.skipped.push({ path: dir, reason: unreadable });
        continue;
      }
      if (code === "EOUTSIDESET") {
        // A folder above it was replaced by a symlink since its parent's listing: nothing out of the tree is read, and
        // nothing below it is deleted on that word. It counts as changing while read (a marker's snapshot is not exact
        // for it, and says so); the symlink is captured from its own folder's listing (the watcher's, the next scan).
        given.onChangingWhileRead?.(dir);
        continue;
      }
      if (code !== "ENOENT" && code !== "ENOTDIR") throw error;
      // Replaced since its parent's listing by a file or a symlink (never followed: set-files.ts), which this scan did
      // not capture: changing while read too.
      if (code === "ENOTDIR") given.onChangingWhileRead?.(dir);
      // The directory vanished while scanning: forget it and what was below.
      if (dir !== "") queue(deletesFor(journal, spec.name, dir));
      await flushWhenFull();
      continue;
    }
    const subdirs: string[] = [];
    const paths: string[] = [];
    // The index of this folder in one query; entries whose stat matches it need no capture (the common case).
    // Each entry found is taken out of it: what is left once the listing is done has vanished.
    const indexed = journal.index.childrenStat(spec.name, dir);
    listing.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const entry of listing) {
      const path = joinPath(dir, entry.name);
      const problem = unreplicableName(spec.root, path);
      if (problem) {
        report.skipped.push({ path, reason: problem });
        continue;
      }
      if (isExcluded(spec, path)) continue;
      const special = specialFileProblem(entry.stat);
      if (special) {
        report.skipped.push({ path, reason: special });
        continue;
      }
      const known = indexed.get(path);
      indexed.delete(path);
      report.entries += 1;
      const st = captureOptions.rehash ? undefined : entry.stat;
      if (st && unchangedInIndex(known, st)) {
        stampIfUnknown(journal, spec.name, path, known, st);
        if (st.isDirectory()) subdirs.push(path);
        continue;
      }
      if (defer && st?.isFile() && defer(path)) continue;
      if (entry.stat?.isFile() && entry.stat.size > deferAbove) large.push(path);
      else paths.push(path);
    }
    await captureAll(paths, (path) => subdirs.push(path));
    if (large.length >= DEFERRED_LARGE_FILES) {
      await flush();
      await captureAll(large.splice(0), (path) => subdirs.push(path), true);
    }
    // A folder left part way: its entries not reached are not deleted, and its subfolders wait for the next scan.
    if (report.stopped) break;
    for (const path of indexed.keys()) {
      if (vanish?.(path)) held.push(path);
      else queue(deletesFor(journal, spec.name, path));
    }
    await flushWhenFull();
    onProgress?.(report);
    // Depth-first, in name order: push in reverse so the first name is scanned first.
    for (const sub of subdirs.sort().reverse()) dirs.push(sub);
    readAhead();
  }
  await flush();
  // A scan that stopped leaves them in the index: the next one finds them again.
  if (!report.stopped) for (const path of held) queue(deletesFor(journal, spec.name, path));
  await flush();
  journal.writeStamps();
  journal.skippedNames.record(spec.name, from, report.skipped, report.stopped !== true);
  return report;
}
