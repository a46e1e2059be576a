// Capture: read one source entry and turn the difference between it and the
// index into changes. The content is read here, when journaled, so what the
// target gets at a seq is what the source held then.

import { createHash, randomUUID } from "node:crypto";
import { createWriteStream, type BigIntStats } from "node:fs";
import { lstat, open, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import { BLOCK_SIZE, MAX_INLINE_DECODED_BYTES, blockLength } from "../contract/wire.ts";
import { MAX_DELTA_RANGES, MAX_RANGED_FILE_BYTES, MIN_DELTA_FILE_BYTES, capRanges, type ByteRange } from "../contract/delta-ranges.ts";
import { ChunkHasher } from "./chunk-hash.ts";
import { ContentSink, DeltaContent, readRanges, scanAgainst, syncDir, type RangeContent } from "./chunk-delta.ts";
import type { EntryStat } from "./folder-stats.ts";
import { readLinkTarget } from "./link-target.ts";
import { readSmallFile } from "./small-file-read.ts";
import { ensureSpoolFolder } from "./spool-folder.ts";
import type { Change, FileStamp, IndexEntry, IndexStat, Journal } from "./journal.ts";
import { isExcluded, type SetSpec } from "./set-spec.ts";
import { openInSet, OutsideSetError, registerSetRoot } from "./set-files.ts";

/** How often a file that keeps changing while read is re-read before the watcher is left to catch the next write. */
const STABLE_READ_ATTEMPTS = 5;
/** Files above this are read at most twice in a capture: each read costs the whole file, and a busy database never holds still. */
const LARGE_READ_BYTES = 64 * 1024 * 1024;

export interface CaptureResult {
  readonly changes: Change[];
  /** The entry is a directory that exists on the source (its children need scanning). */
  readonly isDirectory: boolean;
}

type PutChange = Extract<Change, { op: "put" }>;

/** A source file that is still there could not be read into the journal (its spool folder gone, say): never a delete. */
export class CaptureReadError extends Error {
  override name = "CaptureReadError";
}

const mode = (st: EntryStat) => Number(st.mode & 0o7777n);

/** The entry's lstat, or undefined when it is gone (ENOENT, ENOTDIR). */
export async function statOrGone(abs: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(abs, { bigint: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw error;
  }
}

/**
 * A file with other hard links carries an id derived from its device and
 * inode: every name of it in the set gets the same one, and a restore links
 * them again. A hash, so the wire holds no inode numbers.
 */
export function linkGroupOf(st: BigIntStats): { linkGroup?: string } {
  if (st.nlink < 2n) return {};
  return { linkGroup: createHash("sha256").update(`${st.dev}:${st.ino}`).digest("hex").slice(0, 16) };
}

/** Deletes for an indexed entry and everything below it, children first. */
export function deletesFor(journal: Journal, set: string, path: string): Change[] {
  const known = journal.index.entry(set, path);
  if (!known) return [];
  // Below a file or symlink too: entries indexed below a path that is no folder (a folder swapped for a symlink under
  // an agent from before set-files.ts read through it) go with it, not left for every later snapshot.
  return [...journal.index.descendants(set, path), known].map((entry) => ({ op: "delete", path: entry.path }));
}

/** Files modified (or whose inode changed) this recently are hashed even when their stat matches the index. */
const RACY_WINDOW_NS = 2_000_000_000n;

function modifiedRecently(st: EntryStat): boolean {
  const changed = st.ctimeNs > st.mtimeNs ? st.ctimeNs : st.mtimeNs;
  return BigInt(Date.now()) * 1_000_000n - changed < RACY_WINDOW_NS;
}

/** The ctime and inode the index keeps of a file, from its stat, and its link group when the stat holds a link count. */
export function stampOf(st: EntryStat | BigIntStats): FileStamp {
  const stamp = { ctimeNs: st.ctimeNs.toString(), ino: st.ino.toString() };
  if (!("nlink" in st)) return stamp;
  return { ...stamp, linkGroup: linkGroupOf(st).linkGroup ?? null };
}

/** Size, mtime and mode as indexed: all a copy (cp -p, rsync -a, tar x) of other content may still keep. */
function sameFile(known: IndexStat | undefined, st: EntryStat): boolean {
  return known?.kind === "file" && known.size === Number(st.size) && known.mtimeNs === st.mtimeNs.toString() && known.mode === mode(st);
}

/**
 * The ctime as indexed, or not known (journals from before it was indexed: recorded at the next lstat, unread, so an
 * upgrade does not hash the whole tree). Only the kernel sets a ctime, at every write, chmod, utime and rename: a file
 * rewritten with its size and mtime put back shows here, and so does another file renamed over it or a fresh copy.
 * Not the inode: FUSE and CIFS mounts give a file another one after a cache eviction, which would hash the whole tree
 * at every scan (the inode stays indexed, and readStable still checks it around its read).
 */
function sameStamp(known: IndexStat, st: EntryStat): boolean {
  return known.ctimeNs === null || known.ctimeNs === st.ctimeNs.toString();
}

/**
 * True when the stat shows the entry exactly as the index has it, with
 * nothing to read: a scan may skip capture. A file changed in the last
 * moments is never taken on its stat alone (see capture).
 */
export function unchangedInIndex(known: IndexStat | undefined, st: EntryStat): boolean {
  if (!known) return false;
  if (st.isDirectory()) return known.kind === "dir" && known.mode === mode(st) && known.mtimeNs === st.mtimeNs.toString();
  // A symlink is replaced, never changed in place: a new target means a new mtime.
  if (st.isSymbolicLink()) return known.kind === "symlink" && known.mtimeNs === st.mtimeNs.toString();
  return st.isFile() && sameFile(known, st) && sameStamp(known, st) && !modifiedRecently(st);
}

/** An unchanged file whose index entry has no stamp yet gets this stat's (unread: see sameStamp). */
export function stampIfUnknown(journal: Journal, set: string, path: string, known: IndexStat | undefined, st: EntryStat): void {
  if (known?.kind === "file" && known.ctimeNs === null && st.isFile()) journal.index.stamp(set, path, known, stampOf(st));
}

export interface CaptureOptions {
  /**
   * Hash a file whose size and mtime match the index, to find content changed
   * behind an unchanged stat (a checksum mirror).
   */
  readonly rehash?: boolean;
  /**
   * With rehash, told a file's path when its content differs from the index although nothing in its stat does (size,
   * mtime, mode, ctime; a stamp not known yet counts as the same): verify --deep names them.
   */
  readonly onChangedBehindStat?: (path: string) => void;
  /** Told a changed file's size (from the capture's stat) and path before each read of its content: a caller names a long read. */
  readonly beforeRead?: (size: number, path: string) => void;
  /**
   * Told a file's path when it kept changing while read, so that what is journaled is the bytes as read, which may
   * be no state the file was ever in (a torn copy): a marker's barrier names it (the snapshot is not exact for it).
   */
  readonly onChangingWhileRead?: (path: string) => void;
  /**
   * Given, a changed file with other hard links has every other name the index knows of it (its link group) captured
   * with it: the watcher reports only the name written through. Holds the names captured so, the batch's own set:
   * each is captured once a batch (a name hinted later in it is not captured again).
   */
  readonly otherNames?: Set<string>;
  /**
   * The file kept changing while its previous capture read it (a database's write-ahead log under steady writes): a
   * file of at most LARGE_READ_BYTES is read once, not re-read up to STABLE_READ_ATTEMPTS times for a stable copy it
   * never holds still for. What was read is journaled as changing while read, so the next write captures it again.
   * Never for a marker's barrier, which reads every file as stable as it can.
   */
  readonly readOnce?: boolean;
}

/** Changes that bring the index entry of path in line with the source (and, with otherNames, its other names'); [] when it already is. */
export async function capture(journal: Journal, spec: SetSpec, path: string, options: CaptureOptions = {}): Promise<CaptureResult> {
  const { otherNames } = options;
  if (otherNames === undefined) return captureRetried(journal, spec, path, options);
  if (otherNames.has(path)) return { changes: [], isDirectory: false };
  const result = await captureRetried(journal, spec, path, options);
  const put = result.changes.find((change): change is PutChange => change.op === "put" && change.path === path);
  if (put?.linkGroup === undefined) return result;
  // Journaled in the same transaction as this name: the target, and any marker (one sent straight to the queue too,
  // which has no barrier scan), never holds the names out of step.
  otherNames.add(path);
  const others = journal.index.otherNames(spec.name, put.linkGroup, path).filter((other) => !otherNames.has(other));
  const changes = [...result.changes];
  for (const other of others) {
    otherNames.add(other);
    changes.push(...(await captureRetried(journal, spec, other, options)).changes);
  }
  return { changes, isDirectory: result.isDirectory };
}

async function captureRetried(journal: Journal, spec: SetSpec, path: string, options: CaptureOptions): Promise<CaptureResult> {
  registerSetRoot(spec.root);
  for (let attempt = 1; ; attempt++) {
    try {
      return await captureEntry(journal, spec, path, options);
    } catch (error) {
      // A folder on its path replaced by a symlink while it was captured (set-files.ts): nothing out of the set's tree
      // is read, and nothing of what the index knows at the path is deleted on its word either. It counts as changing
      // while read (a marker's snapshot is not exact for it, and says so); the symlink is captured from its own folder.
      if (error instanceof OutsideSetError) {
        options.onChangingWhileRead?.(path);
        return { changes: [], isDirectory: false };
      }
      // Removed or replaced between its lstat and its read (an application renaming its files): what is there now
      // counts. Replaced by a symlink (ELOOP: files are opened without following one) too. Thrown, the error failed a
      // whole batch of the watcher's changes, or a scan, for one entry that moved on.
      const code = (error as NodeJS.ErrnoException).code;
      if ((code !== "ENOENT" && code !== "ENOTDIR" && code !== "ELOOP" && !(error instanceof CaptureReadError)) || attempt >= STABLE_READ_ATTEMPTS) throw error;
    }
  }
}

async function captureEntry(journal: Journal, spec: SetSpec, path: string, options: CaptureOptions): Promise<CaptureResult> {
  const abs = join(spec.root, path);
  const st = isExcluded(spec, path) ? undefined : await statOrGone(abs);
  const known = journal.index.entry(spec.name, path);
  if (!st) return { changes: deletesFor(journal, spec.name, path), isDirectory: false };

  // A path that changed kind (file -> dir, dir -> symlink ...) is deleted first, with whatever was below it. Below a
  // file or symlink nothing can be: what the index holds there (see deletesFor) is deleted.
  const replaced = (kind: IndexEntry["kind"]) =>
    known && known.kind !== kind ? deletesFor(journal, spec.name, path) : kind === "dir" ? [] : journal.index.descendants(spec.name, path).map((entry): Change => ({ op: "delete", path: entry.path }));

  if (st.isDirectory()) {
    const changes = replaced("dir");
    const mtimeNs = st.mtimeNs.toString();
    if (changes.length > 0 || !known || known.mode !== mode(st) || known.mtimeNs !== mtimeNs) {
      changes.push({ op: "mkdir", path, mode: mode(st), mtimeNs });
    }
    return { changes, isDirectory: true };
  }
  if (st.isSymbolicLink()) {
    const target = await readLinkTarget(abs);
    const mtimeNs = st.mtimeNs.toString();
    const changes = replaced("symlink");
    if (changes.length > 0 || !known || known.link !== target || known.mtimeNs !== mtimeNs) {
      changes.push({ op: "symlink", path, target, mtimeNs });
    }
    return { changes, isDirectory: false };
  }
  if (st.isFile()) {
    if (known && sameFile(known, st)) {
      // A file changed within the last moments may have been rewritten within the filesystem's timestamp tick, size
      // unchanged: its stat cannot tell, so its content is compared (git's "racily clean" entries). So is one whose
      // ctime moved: a chmod undone, a rename or a new link costs a read, a rewrite with its mtime put back is found.
      const stamped = sameStamp(known, st);
      const lookedFor = !stamped || modifiedRecently(st);
      if (!options.rehash && !lookedFor) {
        stampIfUnknown(journal, spec.name, path, known, st);
        return { changes: [], isDirectory: false };
      }
      if ((await hashFile(abs, st.size)).sha256 === known.sha256) {
        // Taken before the read: a write since moved the ctime past it, and the next stat reads the file again.
        if (known.ctimeNs !== st.ctimeNs.toString()) journal.index.stamp(spec.name, path, known, stampOf(st), known.sha256 ?? undefined);
        return { changes: [], isDirectory: false };
      }
      // Found only because every file is hashed: nothing in its stat moved (a rewrite from before ctimes were indexed).
      if (!lookedFor) options.onChangedBehindStat?.(path);
    }
    const changes = replaced("file");
    const put = await readStable(journal, spec.name, abs, path, st, known, options);
    if (put) changes.push(put);
    else changes.push(...deletesFor(journal, spec.name, path));
    return { changes, isDirectory: false };
  }
  // Sockets, FIFOs and devices have no content to replicate: what the path held before is gone from the source.
  return { changes: known ? deletesFor(journal, spec.name, path) : [], isDirectory: false };
}

/** sha256 of a whole stream and of each BLOCK_SIZE block of it (and, when asked, each chunk's fingerprint), fed in chunks of any size. */
class BlockHasher {
  readonly #whole = createHash("sha256");
  readonly #blocks: Buffer[] = [];
  readonly #chunks: ChunkHasher | undefined;
  #block = createHash("sha256");
  #inBlock = 0;
  size = 0;

  constructor(withChunks: boolean) {
    this.#chunks = withChunks ? new ChunkHasher() : undefined;
  }

  update(chunk: Uint8Array): void {
    this.#whole.update(chunk);
    this.#chunks?.update(chunk);
    this.size += chunk.length;
    let offset = 0;
    while (offset < chunk.length) {
      const take = Math.min(BLOCK_SIZE - this.#inBlock, chunk.length - offset);
      this.#block.update(chunk.subarray(offset, offset + take));
      this.#inBlock += take;
      offset += take;
      if (this.#inBlock === BLOCK_SIZE) this.#endBlock();
    }
  }

  #endBlock(): void {
    this.#blocks.push(this.#block.digest());
    this.#block = createHash("sha256");
    this.#inBlock = 0;
  }

  digest(): { sha256: string; blockHashes: Buffer; chunkHashes?: Buffer } {
    if (this.#inBlock > 0) this.#endBlock();
    const chunks = this.#chunks && this.size >= MIN_DELTA_FILE_BYTES ? { chunkHashes: this.#chunks.digest() } : {};
    return { sha256: this.#whole.digest("hex"), blockHashes: Buffer.concat(this.#blocks), ...chunks };
  }
}

/** Block hashes are indexed for files of more than one block: only those can travel as deltas. */
function indexedHashes(size: number, blockHashes: Buffer): Buffer | undefined {
  return size > BLOCK_SIZE ? blockHashes : undefined;
}

function hashBytes(bytes: Uint8Array): { sha256: string; blockHashes: Buffer; chunkHashes?: Buffer } {
  if (bytes.length > 0 && bytes.length <= BLOCK_SIZE && bytes.length < MIN_DELTA_FILE_BYTES) {
    // One block and no fingerprints: the block's hash is the file's, read once (most files of a tree).
    const digest = createHash("sha256").update(bytes).digest();
    return { sha256: digest.toString("hex"), blockHashes: digest };
  }
  const hasher = new BlockHasher(bytes.length >= MIN_DELTA_FILE_BYTES);
  hasher.update(bytes);
  return hasher.digest();
}

/** The SHA-256 of the file's first `size` bytes (the size its stat gave: a file appended meanwhile is not followed). */
async function hashFile(abs: string, size: bigint): Promise<{ sha256: string; blockHashes: Buffer; size: number }> {
  const hasher = new BlockHasher(false);
  const file = await openInSet(abs);
  if (size === 0n) await file.close();
  else for await (const chunk of file.createReadStream({ highWaterMark: BLOCK_SIZE, start: 0, end: Number(size) - 1 })) hasher.update(chunk as Buffer);
  return { ...hasher.digest(), size: hasher.size };
}

/**
 * Reads the listed blocks into memory or a spool file, checking each against
 * the hash the first read gave it; undefined when the file changed in between.
 */
async function readBlocks(spoolDir: string, abs: string, size: number, blocks: readonly number[], expected: Buffer): Promise<RangeContent | undefined> {
  const sink = new ContentSink(spoolDir, Number.POSITIVE_INFINITY);
  const source = await openInSet(abs);
  let complete = false;
  try {
    const buffer = Buffer.alloc(BLOCK_SIZE);
    for (const index of blocks) {
      const length = blockLength(size, index);
      const { bytesRead } = await source.read(buffer, 0, length, index * BLOCK_SIZE);
      const block = buffer.subarray(0, bytesRead);
      if (bytesRead !== length || !createHash("sha256").update(block).digest().equals(expected.subarray(index * 32, index * 32 + 32))) {
        return undefined;
      }
      await sink.add(block);
    }
    complete = true;
  } finally {
    await source.close();
    if (!complete) await sink.discard();
  }
  return sink.finish();
}

/**
 * Per journal, the set + "\0" + path of files whose last delta needed a join (more ranges than a delta lists): only
 * their next read keeps the gaps a join takes its bytes from (chunk-delta.ts DeltaContent). Kept for every file, the
 * gaps are mostly written to the spool and thrown away (up to about the file's size); a file's first joined delta,
 * and every one after a restart (which forgets), is read again for its joined ranges instead.
 */
const joinedLastTime = new WeakMap<Journal, Set<string>>();

/**
 * The delta of a file against what the index holds of it (chunk-delta.ts):
 * the byte ranges that changed, when sending only those is worth it.
 */
async function readDelta(journal: Journal, set: string, abs: string, path: string, known: IndexEntry & { sha256: string }, st: BigIntStats): Promise<PutChange | "whole" | undefined> {
  const chunks = journal.index.chunkFingerprints(set, path, known.sha256);
  // Nothing to compare with (indexed before fingerprints, and too small for block hashes): no delta to find.
  if (!chunks && !known.blocks) return "whole";
  // Past half the file, a delta saves little and costs the target a rebuild.
  const joined = joinedLastTime.get(journal) ?? new Set<string>();
  joinedLastTime.set(journal, joined);
  const key = `${set}\0${path}`;
  const delta = new DeltaContent(journal.spoolDir, Number(st.size), Number(st.size) / 2, joined.has(key));
  const scan = await scanAgainst(abs, { size: known.size, blocks: known.blocks, chunks }, delta).catch(async (error: unknown) => {
    await delta.discard();
    throw error;
  });
  if (!scan) {
    await delta.discard();
    return "whole";
  }
  const { size, sha256, chunkHashes } = scan;
  if (scan.ranges.length > MAX_DELTA_RANGES) joined.add(key);
  else joined.delete(key);
  // The changed bytes (joined across the smallest gaps when too many to list) come from the read the SHA-256 was taken over.
  const found = await delta.finish(scan.ranges, size);
  if (found === "whole") return "whole";
  let ranges: ByteRange[];
  let read: RangeContent | undefined;
  if (found !== "unkept") ({ ranges, read } = found);
  else {
    // No gaps kept (the last delta needed no join), a file that grew while read, or past what the kept gaps cover: the
    // joined ranges are read again, checked against the scan.
    ranges = capRanges(scan.ranges, MAX_DELTA_RANGES);
    read = await readRanges(journal.spoolDir, abs, ranges, chunkHashes);
  }
  if (!read) return undefined;
  const hashes = indexedHashes(size, scan.blockHashes);
  return {
    op: "put",
    path,
    size,
    mode: mode(st),
    mtimeNs: st.mtimeNs.toString(),
    sha256,
    content: read.content,
    delta: { base: known.sha256, blocks: [], ranges, contentSha256: read.contentSha256 },
    ...(hashes ? { blockHashes: hashes } : {}),
    chunkHashes,
  };
}

/**
 * A delta that rewrites the listed blocks of a file on the target with the
 * source's, when the source still holds what the index says (else undefined:
 * the caller sends the file whole).
 */
export async function blockRepair(journal: Journal, spec: SetSpec, known: IndexEntry, blocks: readonly number[]): Promise<PutChange | undefined> {
  const abs = join(spec.root, known.path);
  const st = await statOrGone(abs);
  if (!st?.isFile() || !known.blocks || !known.sha256 || !sameFile(known, st) || !sameStamp(known, st)) return undefined;
  const hashes = Buffer.from(known.blocks);
  const chunks = journal.index.chunkFingerprints(spec.name, known.path, known.sha256);
  const read = await readBlocks(journal.spoolDir, abs, known.size, blocks, hashes);
  if (!read) return undefined;
  return {
    op: "put",
    path: known.path,
    size: known.size,
    mode: known.mode,
    mtimeNs: known.mtimeNs,
    sha256: known.sha256,
    content: read.content,
    delta: { base: known.sha256, blocks: [...blocks], contentSha256: read.contentSha256 },
    blockHashes: hashes,
    // The content stays what the index holds: so do its chunks' fingerprints, and its stamp (checked above).
    ...(chunks ? { chunkHashes: chunks } : {}),
    stamp: stampOf(st),
    // As every put: without it the target's object and the index would forget the file's other names.
    ...linkGroupOf(st),
  };
}

/** A file the index knows the content of, large enough for a delta to save anything. */
function deltaCandidate(known: IndexEntry | undefined, st: BigIntStats): known is IndexEntry & { sha256: string } {
  const size = Number(st.size);
  return known?.kind === "file" && known.sha256 !== null && known.size >= MIN_DELTA_FILE_BYTES && size >= MIN_DELTA_FILE_BYTES && size <= MAX_RANGED_FILE_BYTES;
}

/**
 * Whether a read of the source file at abs failed because the file is gone. An ENOENT can come from elsewhere (the
 * spool folder removed by a cleaner): the source path is looked at again, and a file still there throws
 * CaptureReadError (a failed capture, tried again), never a delete.
 */
async function vanished(error: unknown, abs: string, path: string): Promise<boolean> {
  const code = (error as NodeJS.ErrnoException).code;
  if (code !== "ENOENT" && code !== "ENOTDIR") return false;
  if (!(await statOrGone(abs))?.isFile()) return true;
  throw new CaptureReadError(`cannot capture ${path}: ${error instanceof Error ? error.message : String(error)}; the file is still on the source, so it is captured again`, { cause: error });
}

async function discard(journal: Journal, change: PutChange | undefined): Promise<void> {
  if (change && "spool" in change.content) await rm(join(journal.spoolDir, change.content.spool), { force: true });
}

/**
 * Reads a file so that the bytes match the size and mtime recorded with them:
 * re-reads while the file changes underneath. A large file the index knows
 * travels as the blocks that changed. Returns undefined when the file vanished.
 */
async function readStable(
  journal: Journal,
  set: string,
  abs: string,
  path: string,
  first: BigIntStats,
  known: IndexEntry | undefined,
  options: Pick<CaptureOptions, "beforeRead" | "onChangingWhileRead" | "readOnce">,
): Promise<PutChange | undefined> {
  const onChanging = options.onChangingWhileRead;
  let put: PutChange | undefined;
  let readSince = first.mtimeNs;
  // Counted from the size each read finds: a file that grew large while read (copied in) is not read whole 5 times.
  let attempts = STABLE_READ_ATTEMPTS;
  // A large file keeps its second read also when read once: a delta whose joined ranges had to be read again (see
  // readDelta) may race a write, and would otherwise travel whole.
  const readsOf = (size: bigint) => (size > BigInt(LARGE_READ_BYTES) ? 2 : options.readOnce === true ? 1 : STABLE_READ_ATTEMPTS);
  for (let attempt = 0; attempt < attempts; attempt++) {
    const before = attempt === 0 ? first : await statOrGone(abs);
    if (!before?.isFile()) return undefined;
    attempts = Math.min(attempts, readsOf(before.size));
    if (attempt >= attempts) break;
    // Every read, not only the first: a file small at the first stat and grown large since is named while read.
    options.beforeRead?.(Number(before.size), path);
    readSince = before.mtimeNs;
    let next: PutChange | undefined;
    try {
      const delta = deltaCandidate(known, before) ? await readDelta(journal, set, abs, path, known, before) : "whole";
      if (delta === "whole") next = await readWhole(journal.spoolDir, abs, path, before);
      else next = delta;
    } catch (error) {
      if (await vanished(error, abs, path)) return undefined;
      throw error;
    }
    const after = await statOrGone(abs);
    if (!after?.isFile()) {
      await discard(journal, next);
      return undefined;
    }
    if (!next) continue;
    await discard(journal, put);
    // The stamp from before the read: a write during it leaves the next stat a ctime that differs, and a read again.
    put = { ...next, mode: mode(after), mtimeNs: after.mtimeNs.toString(), stamp: stampOf(before), ...linkGroupOf(after) };
    // The same inode and ctime too: a file renamed over this one during the read with the same size and mtime (cp -p,
    // tar x), or rewritten in place with its mtime put back, is read again.
    if (after.mtimeNs === before.mtimeNs && after.ctimeNs === before.ctimeNs && after.size === before.size && after.ino === before.ino && after.dev === before.dev && BigInt(put.size) === after.size && !(await bytesPast(abs, put))) return put;
  }
  // Still changing: journal what was read, stamped with the mtime from before the read, so that the next capture
  // (the write in progress brings an event) finds the stat changed and reads the file again.
  if (put) {
    onChanging?.(path);
    return { ...put, mtimeNs: readSince.toString() };
  }
  // Every delta's joined ranges, read again, raced a write (readDelta's rare second read): the file travels whole, as read.
  const st = await statOrGone(abs);
  if (!st?.isFile()) return undefined;
  onChanging?.(path);
  try {
    return { ...(await readWhole(journal.spoolDir, abs, path, st)), stamp: stampOf(st), ...linkGroupOf(st) };
  } catch (error) {
    if (await vanished(error, abs, path)) return undefined;
    throw error;
  }
}

/**
 * A file read up to its stat's size (as a delta, see scanAgainst, or a large one whole, see spool) that still has
 * bytes past it: the stat was a cache's, stale while the file grew (a network or FUSE file system), so what was read
 * is not the whole file. A small file read whole goes past its stat's size itself (readSmallFile).
 */
async function bytesPast(abs: string, put: PutChange): Promise<boolean> {
  if (put.delta === undefined && put.size <= MAX_INLINE_DECODED_BYTES) return false;
  let handle;
  try {
    handle = await openInSet(abs);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return false;
    throw error;
  }
  try {
    const { bytesRead } = await handle.read(Buffer.alloc(1), 0, 1, put.size);
    return bytesRead > 0;
  } finally {
    await handle.close();
  }
}

/** The whole content: in memory when small, else copied into the spool. */
async function readWhole(spoolDir: string, abs: string, path: string, st: BigIntStats): Promise<PutChange> {
  if (st.size <= BigInt(MAX_INLINE_DECODED_BYTES)) {
    const bytes = await readSmallFile(abs, Number(st.size));
    const { sha256, blockHashes, chunkHashes } = hashBytes(bytes);
    const hashes = indexedHashes(bytes.length, blockHashes);
    return { op: "put", path, size: bytes.length, mode: mode(st), mtimeNs: st.mtimeNs.toString(), sha256, content: { bytes }, ...(hashes ? { blockHashes: hashes } : {}), ...(chunkHashes ? { chunkHashes } : {}) };
  }
  const { content, sha256, size, blockHashes, chunkHashes } = await spool(spoolDir, abs, st.size);
  const hashes = indexedHashes(size, blockHashes);
  return { op: "put", path, size, mode: mode(st), mtimeNs: st.mtimeNs.toString(), sha256, content, ...(hashes ? { blockHashes: hashes } : {}), ...(chunkHashes ? { chunkHashes } : {}) };
}

/**
 * Copies a large file into the spool directory (fsynced), hashing it on the way: its first statSize bytes, the size
 * its caller's stat found (a file appended faster than it is read is not followed; the stat after the read tells).
 */
async function spool(spoolDir: string, abs: string, statSize: bigint): Promise<{ content: { spool: string }; sha256: string; size: number; blockHashes: Buffer; chunkHashes?: Buffer }> {
  const name = randomUUID();
  const temp = join(spoolDir, `${name}.tmp`);
  const hasher = new BlockHasher(true);
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hasher.update(chunk);
      done(null, chunk);
    },
  });
  try {
    await ensureSpoolFolder(spoolDir);
    const source = await openInSet(abs);
    await pipeline(source.createReadStream({ highWaterMark: BLOCK_SIZE, start: 0, end: Number(statSize) - 1 }), tap, createWriteStream(temp));
    const handle = await open(temp, "r+");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(spoolDir, name));
    await syncDir(spoolDir);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return { content: { spool: name }, size: hasher.size, ...hasher.digest() };
}
