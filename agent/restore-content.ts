// The bytes of a recovery point's files, streamed from the bucket: one GET a
// file (the object version the entry names; else the live object while it
// still holds that content, told by the metadata of the same GET; else the
// preserved copy), and for a large file ranged GETs of parts fetched a few at
// once and handed on in order. Nothing is held whole in memory: parts ahead
// of the one being written share one budget for the whole restore. The
// restore writer checks every file's size and sha256 as it writes it.
// On an unversioned bucket every later GET of a file asks for the ETag the
// first one read; when the live object was replaced meanwhile the file is
// read on from its preserved copy, and when its bytes are not its metadata's
// sha256 (the writer's hash tells, reread()) read again from that copy.
// A body cut off mid-way (a reset connection) is read on from where it
// stopped, a few times.

import { dataKey, META, preservedKey } from "../contract/layout.ts";
import type { SnapshotEntry } from "../contract/tasks.ts";
import { giveBackBody, releaseKeptBodies, SourceChangedError, type ObjectStream, type TargetStore } from "../lambdas/target/index.ts";
import { readOn } from "./read-on.ts";

export class RestoreContentError extends Error {
  override name = "RestoreContentError";
}

const MiB = 1024 * 1024;
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/** A large file's part (ContentReaderOptions.partBytes). */
export const DEFAULT_PART_BYTES = 8 * MiB;
/** Parts fetched ahead across the restore (ContentReaderOptions.partsAhead). */
export const DEFAULT_PARTS_AHEAD = 8;

export interface ContentReaderOptions {
  /** Files larger than this are read in ranged parts (a direct GET holds at most one part, lambdas/target/restore-store.ts). @default 8 MiB */
  readonly rangedAbove?: number;
  /** @default 8 MiB */
  readonly partBytes?: number;
  /** Parts fetched ahead of the one being written, across the whole restore (each held in memory until written). @default 8 */
  readonly partsAhead?: number;
}

/** Slots for parts fetched ahead; a file takes one only when one is free, so no file ever waits holding one. */
class PartBudget {
  #free: number;
  constructor(slots: number) {
    this.#free = slots;
  }
  tryTake(): boolean {
    if (this.#free === 0) return false;
    this.#free -= 1;
    return true;
  }
  give(): void {
    this.#free += 1;
  }
}

/** Where the bytes were found: the same object (and version, or ETag) serves every part. */
interface Source {
  readonly key: string;
  readonly versionId?: string;
  /** Unversioned: later GETs ask for this ETag. */
  readonly etag?: string;
}

/** One file being read: where from (switched to the preserved copy when the live object changes). */
interface Reading {
  source: Source;
}

function sourceOf(key: string, stream: ObjectStream): Source {
  return { key, ...(stream.versionId ? { versionId: stream.versionId } : stream.etag ? { etag: stream.etag } : {}) };
}

/** Reads the bytes of a set's recovery-point entries; `read(entry)` is the restore writer's content(). */
export class ContentReader {
  readonly #store: TargetStore;
  readonly #set: string;
  readonly #rangedAbove: number;
  readonly #partBytes: number;
  readonly #budget: PartBudget;
  /** Files whose live object turned out not to hold their content: read again from the preserved copy only. */
  readonly #liveRejected = new Set<string>();
  /** Files last read from the live key, not the version the entry names: their bytes are only as good as its metadata says. */
  readonly #readLive = new Set<string>();

  constructor(store: TargetStore, set: string, options: ContentReaderOptions = {}) {
    this.#store = store;
    this.#set = set;
    this.#partBytes = options.partBytes ?? DEFAULT_PART_BYTES;
    this.#rangedAbove = Math.max(options.rangedAbove ?? 8 * MiB, this.#partBytes);
    this.#budget = new PartBudget(options.partsAhead ?? DEFAULT_PARTS_AHEAD);
  }

  /** The entry's bytes in order; throws RestoreContentError naming the file when they cannot be had. */
  async read(entry: SnapshotEntry): Promise<AsyncIterable<Uint8Array>> {
    // Empty content is known by its hash: nothing to fetch.
    if (entry.size === 0 && entry.sha256 === EMPTY_SHA256) return (async function* () {})();
    const ranged = entry.size > this.#rangedAbove;
    const first = await this.#open(entry, ranged ? this.#partBytes : undefined);
    if (first.stream.size !== entry.size) {
      first.stream.discard();
      throw new RestoreContentError(`${entry.path}: ${first.source.key} holds ${first.stream.size} bytes, the recovery point's file ${entry.size}`);
    }
    // The version the entry names holds its bytes; the live object (on a versioned bucket too) only as its metadata says.
    const named = entry.versionId !== undefined && first.source.versionId === entry.versionId;
    if (first.source.key === dataKey(this.#set, entry.path) && !named) this.#readLive.add(entry.path);
    else this.#readLive.delete(entry.path);
    const reading: Reading = { source: first.source };
    if (!ranged) return this.#resumable(entry, reading, first.stream, 0, entry.size);
    return this.#parts(entry, reading, first.stream);
  }

  /**
   * The writer found the bytes read() gave not to be the entry's sha256 (it hashes every byte as it writes: they
   * are not hashed twice). True when they came from the live object (whose metadata said it held them) and a
   * preserved copy holds the content: the next read() of the entry reads that copy. The writer's own error names
   * both sha256s otherwise.
   */
  async reread(entry: SnapshotEntry): Promise<boolean> {
    if (!this.#readLive.has(entry.path) || this.#liveRejected.has(entry.path) || entry.sha256 === undefined) return false;
    if (!(await this.#store.head(preservedKey(this.#set, entry.sha256)))) return false;
    this.#liveRejected.add(entry.path);
    return true;
  }

  /**
   * The writer wrote a chunk read() gave and holds it no more (RecoveryPoint.written): an answer's body the direct
   * reads lent is read into again by a later GET of the same length, instead of a new buffer.
   */
  written(chunk: Uint8Array): void {
    giveBackBody(chunk);
  }

  /** The restore is over (RecoveryPoint.finished): the bodies given back wait for no later answer (up to 64 MiB). */
  finished(): void {
    releaseKeptBodies();
  }

  async #readStream(key: string, options: { versionId?: string; offset?: number; length?: number; ifMatch?: string }): Promise<ObjectStream | undefined> {
    if (this.#store.readStream) return this.#store.readStream(key, options);
    // A store that cannot stream: its whole object (only test stores lack readStream).
    const object = await this.#store.get(key, options.versionId);
    if (!object) return undefined;
    const start = options.offset ?? 0;
    const body = options.length !== undefined ? object.body.subarray(start, start + options.length) : object.body;
    return { size: object.body.length, meta: object.meta, body: (async function* () { yield body; })(), discard: () => undefined };
  }

  /** The first GET of the entry's bytes (the first part, when `length` is given), from the first place that holds them. */
  async #open(entry: SnapshotEntry, length: number | undefined): Promise<{ source: Source; stream: ObjectStream }> {
    const live = dataKey(this.#set, entry.path);
    const range = length !== undefined ? { offset: 0, length } : {};
    if (this.#liveRejected.has(entry.path) && entry.sha256 !== undefined) {
      const preserved = await this.#readStream(preservedKey(this.#set, entry.sha256), range);
      if (preserved) return { source: sourceOf(preservedKey(this.#set, entry.sha256), preserved), stream: preserved };
      throw new RestoreContentError(`${entry.path}: the live object does not hold its content (sha256 ${entry.sha256}) and no preserved copy does`);
    }
    if (entry.versionId !== undefined) {
      const stream = await this.#readStream(live, { versionId: entry.versionId, ...range });
      if (stream) return { source: { key: live, versionId: entry.versionId }, stream };
    }
    if (entry.sha256 === undefined) throw new RestoreContentError(`${entry.path}: the recovery point names no sha256 for it`);
    const current = await this.#readStream(live, range);
    // The live object holds the entry's content while its metadata says so; later parts read that very version.
    if (current?.meta[META.sha256] === entry.sha256) return { source: sourceOf(live, current), stream: current };
    current?.discard();
    const kept = preservedKey(this.#set, entry.sha256);
    const preserved = await this.#readStream(kept, range);
    if (preserved) return { source: sourceOf(kept, preserved), stream: preserved };
    throw new RestoreContentError(`${entry.path}: its content (sha256 ${entry.sha256}) is neither live nor preserved in the bucket`);
  }

  /**
   * A ranged GET of the file's current source. The live object replaced since the first GET (its ETag no longer the
   * one read): the preserved copy holds the same bytes, and the rest of the file is read from it.
   */
  async #openRange(entry: SnapshotEntry, reading: Reading, offset: number, length: number): Promise<ObjectStream> {
    const { source } = reading;
    const condition = source.versionId !== undefined ? { versionId: source.versionId } : source.etag !== undefined ? { ifMatch: source.etag } : {};
    try {
      const stream = await this.#readStream(source.key, { ...condition, offset, length });
      if (!stream) throw new RestoreContentError(`${entry.path}: ${source.key} went missing while it was read (bytes from ${offset})`);
      return stream;
    } catch (error) {
      const kept = entry.sha256 !== undefined ? preservedKey(this.#set, entry.sha256) : undefined;
      const replaced = error instanceof SourceChangedError || error instanceof RestoreContentError;
      if (!replaced || kept === undefined || source.key === kept || source.versionId !== undefined) throw error;
      const stream = await this.#readStream(kept, { offset, length });
      if (!stream) throw new RestoreContentError(`${entry.path}: ${source.key} changed while it was read (bytes from ${offset}) and no preserved copy holds its content`);
      // The writer's hash covers these bytes too: the live parts read before may still not be the entry's.
      reading.source = sourceOf(kept, stream);
      return stream;
    }
  }

  /**
   * The bytes [offset, offset + length) as they arrive, checked to be exactly that many; `opened` is the first GET
   * of them when made already. A body cut off mid-way is read on from where it stopped (BODY_RETRIES times).
   */
  async *#resumable(entry: SnapshotEntry, reading: Reading, opened: ObjectStream | undefined, offset: number, length: number): AsyncGenerator<Uint8Array> {
    let got = 0;
    const first = opened ?? (await this.#openRange(entry, reading, offset, length));
    for await (const chunk of readOn(first, {
      length,
      reopen: (read) => this.#openRange(entry, reading, offset + read, length - read),
      isFinal: (error) => error instanceof RestoreContentError,
      tooMuch: () => new RestoreContentError(`${entry.path}: the store sent more than the ${length} bytes asked for at ${offset}`),
    })) {
      got += chunk.length;
      yield chunk;
    }
    if (got !== length) throw new RestoreContentError(`${entry.path}: ${reading.source.key} holds fewer bytes than the recovery point's ${entry.size} (${got} of ${length} at ${offset})`);
  }

  /** One part's bytes, as they arrived (not copied): fetched ahead, they wait in memory for the parts before them to be written. */
  async #part(entry: SnapshotEntry, reading: Reading, offset: number, length: number): Promise<Uint8Array[]> {
    const chunks: Uint8Array[] = [];
    for await (const chunk of this.#resumable(entry, reading, undefined, offset, length)) chunks.push(chunk);
    return chunks;
  }

  /** The first part streamed as it arrives, the others fetched ahead (as the budget allows) and handed on in order. */
  async *#parts(entry: SnapshotEntry, reading: Reading, first: ObjectStream): AsyncGenerator<Uint8Array> {
    const size = entry.size;
    const step = this.#partBytes;
    const ahead = new Map<number, { part: Promise<Uint8Array[]> }>();
    let next = step;
    // Each part fetched ahead holds a slot until it is handed on, or dropped (settled or not) when the file stops early.
    const fetchAhead = () => {
      while (next < size && this.#budget.tryTake()) {
        const part = this.#part(entry, reading, next, Math.min(step, size - next));
        // Handled where it is awaited; this keeps an unawaited failure (the restore stopped early) from crashing.
        part.catch(() => undefined);
        ahead.set(next, { part });
        next += step;
      }
    };
    try {
      fetchAhead();
      yield* this.#resumable(entry, reading, first, 0, Math.min(step, size));
      for (let offset = step; offset < size; offset += step) {
        fetchAhead();
        const fetched = ahead.get(offset);
        if (fetched) {
          const chunks = await fetched.part;
          ahead.delete(offset);
          this.#budget.give();
          yield* chunks;
        } else {
          // Not fetched ahead (no slot was free): streamed now, held nowhere; a file never waits for a slot.
          next = offset + step;
          yield* this.#resumable(entry, reading, undefined, offset, Math.min(step, size - offset));
        }
      }
    } finally {
      first.discard();
      for (let i = 0; i < ahead.size; i++) this.#budget.give();
    }
  }
}
