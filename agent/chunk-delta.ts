// Finding what changed inside a file (issue 17). A file the index knows is
// read once: its SHA-256 (what the target checks the rebuilt file against),
// the fingerprint of each 4 KiB chunk, compared with the indexed ones, and the
// SHA-256 of each 512 KiB block (kept for verification), taken from the index
// for a block whose chunks all match and computed only for the others. The
// changed chunks are kept as they are read (a second read could find them
// written again: a busy database rewrites pages all the time), so the delta's
// content is exactly the bytes the SHA-256 was taken over; so are the bytes
// that join too many ranges (DeltaContent).
//
// Without indexed fingerprints (a journal from before them), blocks are
// compared by SHA-256 as before: the changed blocks travel, as byte ranges.

import { createHash, randomUUID } from "node:crypto";
import { open, rename, rm, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { CHUNK_SIZE, MAX_DELTA_RANGES, capRanges, rangesBytes, type ByteRange } from "../contract/delta-ranges.ts";
import { BLOCK_SIZE, MAX_INLINE_DECODED_BYTES, blockCount, blockLength } from "../contract/wire.ts";
import { ChunkHasher, FINGERPRINT_BYTES, chunkFingerprints } from "./chunk-hash.ts";
import { ensureSpoolFolder } from "./spool-folder.ts";
import { openInSet } from "./set-files.ts";

/** Bytes read at a time: a whole number of blocks (and so of chunks). */
const READ_BYTES = 8 * BLOCK_SIZE;
/** Longest stretch of unchanged bytes kept for joining two ranges: a delta of a file up to 32 GiB always fits MAX_DELTA_RANGES. */
const MAX_KEPT_GAP = 8 * 1024 * 1024;

/** What the index holds of the file's previous content. */
export interface DeltaBase {
  readonly size: number;
  /** SHA-256 of each block of the previous content, concatenated; null when none were indexed. */
  readonly blocks: Uint8Array | null;
  /** Fingerprint of each chunk of the previous content; undefined when none were indexed. */
  readonly chunks: Uint8Array | undefined;
}

export interface ScannedFile {
  readonly size: number;
  readonly sha256: string;
  /** SHA-256 of each block, concatenated. */
  readonly blockHashes: Buffer;
  /** Fingerprint of each chunk, concatenated. */
  readonly chunkHashes: Buffer;
  /** The bytes that differ from the base (or lie past its end), chunk-aligned, in order. */
  readonly ranges: ByteRange[];
}

/** Fills buffer from position on; fewer bytes only at the end of the file. */
async function readFull(file: FileHandle, buffer: Buffer, position: number): Promise<number> {
  let filled = 0;
  while (filled < buffer.length) {
    const { bytesRead } = await file.read(buffer, filled, buffer.length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled;
}

/** Adds the bytes [from, to) to the ranges, joining the last one when they touch. */
function addRange(ranges: ByteRange[], from: number, to: number): void {
  const last = ranges[ranges.length - 1];
  if (last && last[0] + last[1] === from) last[1] = to - last[0];
  else ranges.push([from, to - from]);
}

/**
 * Where an append starts inside the base's short last chunk: when the chunk
 * (at `at` in data, `length` bytes) begins with what the base's last chunk
 * held, only what follows is new. Undefined otherwise.
 */
function appendedFrom(data: Buffer, at: number, length: number, base: DeltaBase, chunk: number): number | undefined {
  const kept = base.size % CHUNK_SIZE;
  if (!base.chunks || kept === 0 || chunk !== Math.floor(base.size / CHUNK_SIZE) || length <= kept) return undefined;
  const prefix = chunkFingerprints(data.subarray(at, at + kept));
  return sameBytes(prefix, 0, base.chunks, chunk * FINGERPRINT_BYTES, FINGERPRINT_BYTES) ? base.size : undefined;
}

function sameBytes(a: Uint8Array, aAt: number, b: Uint8Array, bAt: number, length: number): boolean {
  if (aAt + length > a.length || bAt + length > b.length) return false;
  for (let k = 0; k < length; k++) if (a[aAt + k] !== b[bAt + k]) return false;
  return true;
}

/** The changed bytes as a scan reads them: in memory, or spooled once past MAX_INLINE_DECODED_BYTES; dropped past `limit`. */
export class ContentSink {
  readonly #spoolDir: string;
  readonly #limit: number;
  readonly #name = randomUUID();
  readonly #hash;
  #parts: Buffer[] = [];
  #size = 0;
  #file: FileHandle | undefined;
  /** Bytes of #parts not written to #file yet. */
  #unwritten = 0;
  /** More than `limit` bytes were offered: nothing is kept. */
  over = false;

  /** hashed: false for bytes that may never travel (a delta's gaps): no SHA-256 of them is taken. */
  constructor(spoolDir: string, limit: number, { hashed = true } = {}) {
    this.#spoolDir = spoolDir;
    this.#limit = limit;
    this.#hash = hashed ? createHash("sha256") : undefined;
  }

  /** Bytes kept so far. */
  get size(): number {
    return this.#size;
  }

  get #temp(): string {
    return join(this.#spoolDir, `${this.#name}.tmp`);
  }

  async add(bytes: Uint8Array): Promise<void> {
    if (this.over) return;
    if (this.#size + bytes.length > this.#limit) {
      this.over = true;
      await this.discard();
      return;
    }
    this.#hash?.update(bytes);
    this.#size += bytes.length;
    this.#parts.push(Buffer.from(bytes));
    this.#unwritten += bytes.length;
    if (!this.#file && this.#size > MAX_INLINE_DECODED_BYTES) {
      await ensureSpoolFolder(this.#spoolDir);
      this.#file = await open(this.#temp, "w+");
    }
    if (this.#file && this.#unwritten >= MAX_INLINE_DECODED_BYTES) await this.#write(this.#file);
  }

  /**
   * Writes what was kept since the last write, in one write: a delta's content comes a 4 KiB chunk at a time, and a
   * write each queued ~256 writes per MiB behind whatever else uses the thread pool (the local cloud's applier
   * rebuilding a large file took seconds per MiB then, with the set's lane held the whole time).
   */
  async #write(file: FileHandle): Promise<void> {
    const bytes = Buffer.concat(this.#parts);
    // A write may take fewer bytes than it was given (a disk filling up): the rest is written on, never left out.
    for (let done = 0; done < bytes.length; ) {
      const { bytesWritten } = await file.write(bytes, done, bytes.length - done);
      if (bytesWritten === 0) throw new Error(`spool file ${this.#temp}: a write took no bytes (${bytes.length - done} left)`);
      done += bytesWritten;
    }
    this.#parts = [];
    this.#unwritten = 0;
  }

  /** Up to `length` of the bytes kept, from `position` on (fewer only at the end). */
  async read(position: number, length: number): Promise<Buffer> {
    const want = Math.max(0, Math.min(length, this.#size - position));
    if (!this.#file) {
      if (this.#parts.length > 1) this.#parts = [Buffer.concat(this.#parts)];
      return (this.#parts[0] ?? Buffer.alloc(0)).subarray(position, position + want);
    }
    if (this.#unwritten > 0) await this.#write(this.#file);
    const bytes = Buffer.allocUnsafe(want);
    const read = await readFull(this.#file, bytes, position);
    if (read !== want) throw new Error(`spool file ${this.#temp}: ${read} bytes at ${position}, ${want} were written`);
    return bytes;
  }

  /** What was kept: in memory, or a spool file (fsynced) named in the content; failing, it leaves no file behind. */
  async finish(): Promise<RangeContent> {
    if (!this.#hash) throw new Error("a sink of bytes that do not travel is never finished");
    const contentSha256 = this.#hash.digest("hex");
    if (!this.#file) return { content: { bytes: Buffer.concat(this.#parts) }, contentSha256 };
    const file = this.#file;
    const final = join(this.#spoolDir, this.#name);
    try {
      await this.#write(file);
      await file.sync();
      this.#file = undefined;
      await file.close();
      await rename(this.#temp, final);
      await syncDir(this.#spoolDir);
    } catch (error) {
      // Closed or not, renamed or not: no record names the file, so nothing would ever remove it. The first error is the one told.
      await this.discard().catch(() => undefined);
      await rm(this.#temp, { force: true });
      await rm(final, { force: true });
      throw error;
    }
    return { content: { spool: this.#name }, contentSha256 };
  }

  async discard(): Promise<void> {
    this.#parts = [];
    this.#unwritten = 0;
    if (!this.#file) return;
    const file = this.#file;
    this.#file = undefined;
    try {
      await file.close();
    } finally {
      await rm(this.#temp, { force: true });
    }
  }
}

/**
 * A delta's content as the scan finds it, in one read: the changed bytes, and
 * every stretch of unchanged bytes between two of them up to the gap limit
 * (the bytes since the last change are held in memory until the next change
 * or the limit). More ranges than MAX_DELTA_RANGES are then joined across
 * their smallest gaps with bytes of the same read, never read again: the
 * delta describes exactly the bytes the file's SHA-256 was taken over.
 *
 * The gap limit is the file's size over MAX_DELTA_RANGES: fewer than that many
 * gaps can be longer, so the gaps a join needs are always kept (for a file up
 * to MAX_KEPT_GAP * MAX_DELTA_RANGES that did not grow while read). Gaps are
 * kept only when the caller expects a join (capture.ts: the file's last delta
 * needed one), since most are thrown away unused.
 */
export class DeltaContent {
  readonly #spoolDir: string;
  readonly #changed: ContentSink;
  readonly #gaps: ContentSink;
  readonly #gapLimit: number;
  /** End of the last changed bytes; -1 before the first. */
  #end = -1;
  /** The bytes since #end read in earlier windows, while they fit the gap limit. */
  #tail: Buffer[] = [];
  #tailBytes = 0;
  #collecting = false;

  /**
   * size: the file's size when its read starts; limit: most changed bytes worth a delta. keepGaps false: no gap is
   * kept (a file whose delta is unlikely to need a join: kept gaps would be written only to be thrown away), and a
   * delta that needs a join is "unkept".
   */
  constructor(spoolDir: string, size: number, limit: number, keepGaps = true) {
    this.#spoolDir = spoolDir;
    this.#changed = new ContentSink(spoolDir, limit);
    this.#gaps = new ContentSink(spoolDir, Number.POSITIVE_INFINITY, { hashed: false });
    this.#gapLimit = keepGaps ? Math.min(MAX_KEPT_GAP, Math.ceil(size / MAX_DELTA_RANGES / CHUNK_SIZE) * CHUNK_SIZE) : 0;
  }

  /** Unchanged bytes kept so far for a join. */
  get keptGapBytes(): number {
    return this.#gaps.size;
  }

  /** More changed bytes than the limit: the file is better sent whole. */
  get over(): boolean {
    return this.#changed.over;
  }

  /** The bytes [from, to) of the file changed; data holds the bytes of the window read at position. */
  async add(data: Buffer, position: number, from: number, to: number): Promise<void> {
    if (this.#end >= 0 && from > this.#end && from - this.#end <= this.#gapLimit) {
      // Gaps kept never exceed the limit, so the tail holds every byte from #end to this window.
      for (const part of this.#tail) await this.#gaps.add(part);
      await this.#gaps.add(data.subarray(Math.max(this.#end, position) - position, from - position));
    }
    this.#tail = [];
    this.#tailBytes = 0;
    this.#collecting = true;
    await this.#changed.add(data.subarray(from - position, to - position));
    this.#end = to;
  }

  /** The window read at position is done with: what follows the last change is kept while it could become a gap. */
  windowRead(data: Buffer, position: number): void {
    if (!this.#collecting) return;
    const from = Math.max(this.#end, position);
    const length = position + data.length - from;
    if (this.#tailBytes + length > this.#gapLimit) {
      this.#tail = [];
      this.#tailBytes = 0;
      this.#collecting = false;
    } else if (length > 0) {
      this.#tail.push(Buffer.from(data.subarray(from - position)));
      this.#tailBytes += length;
    }
  }

  /**
   * The delta's ranges and content, given the ranges the scan found: as found
   * when they are few enough, else joined across the smallest gaps. "whole"
   * when the joined ranges cover more than half the file; "unkept" when a gap
   * the join needs was not kept (the file grew while read, or is larger than
   * the gap limit covers): the caller reads the joined ranges on its own.
   */
  async finish(ranges: readonly ByteRange[], size: number): Promise<{ ranges: ByteRange[]; read: RangeContent } | "whole" | "unkept"> {
    let done = false;
    try {
      if (ranges.length <= MAX_DELTA_RANGES) {
        const read = await this.#changed.finish();
        done = true;
        return { ranges: ranges.map(([offset, length]) => [offset, length]), read };
      }
      const joined = capRanges(ranges, MAX_DELTA_RANGES);
      if (rangesBytes(joined) * 2 > size) return "whole";
      const inside = joinedGaps(ranges, joined);
      if (inside.some((joins, i) => joins && gapAfter(ranges, i) > this.#gapLimit)) return "unkept";
      const read = await this.#join(ranges, inside);
      done = true;
      return { ranges: joined, read };
    } finally {
      if (!done) await this.#changed.discard();
      await this.#gaps.discard();
    }
  }

  /** The changed bytes with the joined gaps' bytes between them, in the file's order. */
  async #join(ranges: readonly ByteRange[], inside: readonly boolean[]): Promise<RangeContent> {
    const out = new ContentSink(this.#spoolDir, Number.POSITIVE_INFINITY);
    const changed = new SinkCursor(this.#changed);
    const gaps = new SinkCursor(this.#gaps);
    try {
      for (const [i, [, length]] of ranges.entries()) {
        await changed.copy(length, out);
        if (i === ranges.length - 1) break;
        const gap = gapAfter(ranges, i);
        if (inside[i]) await gaps.copy(gap, out);
        else if (gap <= this.#gapLimit) gaps.skip(gap);
      }
      const read = await out.finish();
      await this.#changed.discard();
      return read;
    } catch (error) {
      await out.discard();
      throw error;
    }
  }

  async discard(): Promise<void> {
    await this.#changed.discard();
    await this.#gaps.discard();
  }
}

/** Unchanged bytes between ranges[i] and ranges[i + 1]. */
function gapAfter(ranges: readonly ByteRange[], i: number): number {
  const [offset = 0, length = 0] = ranges[i] ?? [];
  return (ranges[i + 1]?.[0] ?? offset + length) - (offset + length);
}

/** For each gap after ranges[i]: whether the joined ranges (a join of ranges) cover it. */
function joinedGaps(ranges: readonly ByteRange[], joined: readonly ByteRange[]): boolean[] {
  let j = 0;
  return ranges.slice(0, -1).map((_, i) => {
    const next = ranges[i + 1]?.[0] ?? 0;
    while (j < joined.length && (joined[j]?.[0] ?? 0) + (joined[j]?.[1] ?? 0) <= next) j++;
    const [offset = Infinity] = joined[j] ?? [];
    return offset < next;
  });
}

/** Reads a sink's bytes back in order, a window at a time. */
class SinkCursor {
  readonly #sink: ContentSink;
  #window: Buffer = Buffer.alloc(0);
  /** Sink offset of the window's first byte, and of the next byte to hand out. */
  #windowAt = 0;
  #at = 0;

  constructor(sink: ContentSink) {
    this.#sink = sink;
  }

  async copy(length: number, to: ContentSink): Promise<void> {
    while (length > 0) {
      if (this.#at < this.#windowAt || this.#at >= this.#windowAt + this.#window.length) {
        this.#window = await this.#sink.read(this.#at, READ_BYTES);
        this.#windowAt = this.#at;
        if (this.#window.length === 0) throw new Error(`a delta's kept bytes end at ${this.#at}, ${length} short`);
      }
      const from = this.#at - this.#windowAt;
      const take = Math.min(length, this.#window.length - from);
      await to.add(this.#window.subarray(from, from + take));
      this.#at += take;
      length -= take;
    }
  }

  skip(length: number): void {
    this.#at += length;
  }
}

/**
 * Reads the file once and compares it with the base (see the top of this
 * file), handing the changed bytes to delta; undefined when they were more
 * than its limit (the file is better sent whole).
 */
export async function scanAgainst(abs: string, base: DeltaBase, delta?: DeltaContent): Promise<ScannedFile | undefined> {
  const file = await openInSet(abs);
  try {
    const expected = (await file.stat()).size;
    const buffer = Buffer.allocUnsafeSlow(READ_BYTES);
    const whole = createHash("sha256");
    const chunks = new ChunkHasher(expected);
    const blockHashes: Buffer[] = [];
    const ranges: ByteRange[] = [];
    const baseBlocks = blockCount(base.size);
    let position = 0;
    for (;;) {
      // Up to the size the read began with: a file appended faster than it is read would otherwise be followed for as
      // long as it grows (a marker's barrier held behind it). What it grew by meanwhile shows in the caller's stat after.
      const wanted = Math.min(READ_BYTES, expected - position);
      if (wanted <= 0) break;
      const read = await readFull(file, buffer.subarray(0, wanted), position);
      if (read === 0) break;
      const data = buffer.subarray(0, read);
      whole.update(data);
      chunks.update(data);
      // A short read is the end: the last, partial chunk gets its fingerprint now.
      const fingerprints = read < READ_BYTES ? chunks.digest() : chunks.view();
      for (let at = 0; at < read; at += BLOCK_SIZE) {
        const index = (position + at) / BLOCK_SIZE;
        const length = Math.min(BLOCK_SIZE, read - at);
        const block = data.subarray(at, at + length);
        let changed = false;
        if (base.chunks) {
          for (let offset = position + at; offset < position + at + length; offset += CHUNK_SIZE) {
            const chunk = offset / CHUNK_SIZE;
            if (sameBytes(fingerprints, chunk * FINGERPRINT_BYTES, base.chunks, chunk * FINGERPRINT_BYTES, FINGERPRINT_BYTES)) continue;
            changed = true;
            const end = Math.min(offset + CHUNK_SIZE, position + read);
            const from = appendedFrom(data, offset - position, end - offset, base, chunk) ?? offset;
            addRange(ranges, from, end);
            await delta?.add(data, position, from, end);
          }
        }
        // Every chunk of the block as indexed: so is the block's SHA-256.
        const indexed = base.chunks && !changed && index < baseBlocks && blockLength(base.size, index) === length ? base.blocks?.subarray(index * 32, index * 32 + 32) : undefined;
        const hash = indexed?.length === 32 ? Buffer.from(indexed) : createHash("sha256").update(block).digest();
        if (!base.chunks && !(base.blocks && sameBytes(hash, 0, base.blocks, index * 32, 32) && blockLength(base.size, index) === length)) {
          addRange(ranges, position + at, position + at + length);
          await delta?.add(data, position, position + at, position + at + length);
        }
        blockHashes.push(hash);
        if (delta?.over) return undefined;
      }
      delta?.windowRead(data, position);
      position += read;
      if (read < READ_BYTES) break;
    }
    return { size: position, sha256: whole.digest("hex"), blockHashes: Buffer.concat(blockHashes), chunkHashes: chunks.digest(), ranges };
  } finally {
    await file.close();
  }
}

export async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface RangeContent {
  readonly content: { bytes: Uint8Array } | { spool: string };
  readonly contentSha256: string;
}

/**
 * Reads the ranges into memory or a spool file, checking each chunk they
 * touch (read whole for that) against the fingerprint the scan gave it;
 * undefined when the file changed in between (the caller reads it again).
 */
export async function readRanges(spoolDir: string, abs: string, ranges: readonly ByteRange[], fingerprints: Uint8Array): Promise<RangeContent | undefined> {
  const sink = new ContentSink(spoolDir, Number.POSITIVE_INFINITY);
  const source = await openInSet(abs);
  let complete = false;
  try {
    const buffer = Buffer.allocUnsafeSlow(READ_BYTES);
    for (const [offset, length] of ranges) {
      // A range starts on a chunk, but an append's may start inside the base's short last chunk.
      for (let at = offset - (offset % CHUNK_SIZE); at < offset + length; at += READ_BYTES) {
        const want = Math.min(READ_BYTES, offset + length - at);
        const { bytesRead } = await source.read(buffer, 0, want, at);
        const now = chunkFingerprints(buffer.subarray(0, bytesRead));
        if (bytesRead !== want || !sameBytes(now, 0, fingerprints, (at / CHUNK_SIZE) * FINGERPRINT_BYTES, now.length)) return undefined;
        await sink.add(buffer.subarray(Math.max(0, offset - at), bytesRead));
      }
    }
    complete = true;
  } finally {
    await source.close();
    if (!complete) await sink.discard();
  }
  return sink.finish();
}
