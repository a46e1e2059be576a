// The bytes of a recovery point's files, streamed from the bucket: one GET a
// file (the object version the entry names; else the live object while it
// still holds that content, told by the metadata of the same GET; else the
// preserved copy), and for a large file ranged GETs of parts fetched a few at
// once and handed on in order. Nothing is held whole in memory: parts ahead
// of the one being written share one budget for the whole restore. The
// restore writer checks every file's size and sha256 as it writes it.

import { dataKey, META, preservedKey } from "../contract/layout.ts";
import type { SnapshotEntry } from "../contract/tasks.ts";
import type { ObjectStream, TargetStore } from "../lambdas/target/index.ts";

export class RestoreContentError extends Error {
  override name = "RestoreContentError";
}

const MiB = 1024 * 1024;
const EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

export interface ContentReaderOptions {
  /** Files larger than this are read in ranged parts. @default 16 MiB */
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

/** Where the bytes were found: the same object (and version) serves every part. */
interface Source {
  readonly key: string;
  readonly versionId?: string;
}

/** Reads the bytes of a set's recovery-point entries; `read(entry)` is the restore writer's content(). */
export class ContentReader {
  readonly #store: TargetStore;
  readonly #set: string;
  readonly #rangedAbove: number;
  readonly #partBytes: number;
  readonly #budget: PartBudget;

  constructor(store: TargetStore, set: string, options: ContentReaderOptions = {}) {
    this.#store = store;
    this.#set = set;
    this.#partBytes = options.partBytes ?? 8 * MiB;
    this.#rangedAbove = Math.max(options.rangedAbove ?? 16 * MiB, this.#partBytes);
    this.#budget = new PartBudget(options.partsAhead ?? 8);
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
    if (!ranged) return first.stream.body;
    return this.#parts(entry, first.source, first.stream);
  }

  async #readStream(key: string, options: { versionId?: string; offset?: number; length?: number }): Promise<ObjectStream | undefined> {
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
    if (entry.versionId !== undefined) {
      const stream = await this.#readStream(live, { versionId: entry.versionId, ...range });
      if (stream) return { source: { key: live, versionId: entry.versionId }, stream };
    }
    if (entry.sha256 === undefined) throw new RestoreContentError(`${entry.path}: the recovery point names no sha256 for it`);
    const current = await this.#readStream(live, range);
    // The live object holds the entry's content while its metadata says so; later parts read that very version.
    if (current?.meta[META.sha256] === entry.sha256) return { source: { key: live, ...(current.versionId ? { versionId: current.versionId } : {}) }, stream: current };
    current?.discard();
    const kept = preservedKey(this.#set, entry.sha256);
    const preserved = await this.#readStream(kept, range);
    if (preserved) return { source: { key: kept, ...(preserved.versionId ? { versionId: preserved.versionId } : {}) }, stream: preserved };
    throw new RestoreContentError(`${entry.path}: its content (sha256 ${entry.sha256}) is neither live nor preserved in the bucket`);
  }

  /** The bytes [offset, offset + length) of the source as they arrive, checked to be exactly that many. */
  async *#range(entry: SnapshotEntry, source: Source, offset: number, length: number): AsyncGenerator<Uint8Array> {
    const stream = await this.#readStream(source.key, { ...(source.versionId !== undefined ? { versionId: source.versionId } : {}), offset, length });
    if (!stream) throw new RestoreContentError(`${entry.path}: ${source.key} went missing while it was read (bytes from ${offset})`);
    let got = 0;
    try {
      for await (const chunk of stream.body) {
        got += chunk.length;
        if (got > length) throw new RestoreContentError(`${entry.path}: the store sent more than the ${length} bytes asked for at ${offset}`);
        yield chunk;
      }
    } finally {
      stream.discard();
    }
    if (got !== length) throw new RestoreContentError(`${entry.path}: ${source.key} holds fewer bytes than the recovery point's ${entry.size} (${got} of ${length} at ${offset})`);
  }

  /** One part's bytes, as they arrived (not copied): fetched ahead, they wait in memory for the parts before them to be written. */
  async #part(entry: SnapshotEntry, source: Source, offset: number, length: number): Promise<Uint8Array[]> {
    const chunks: Uint8Array[] = [];
    for await (const chunk of this.#range(entry, source, offset, length)) chunks.push(chunk);
    return chunks;
  }

  /** The first part streamed as it arrives, the others fetched ahead (as the budget allows) and handed on in order. */
  async *#parts(entry: SnapshotEntry, source: Source, first: ObjectStream): AsyncGenerator<Uint8Array> {
    const size = entry.size;
    const step = this.#partBytes;
    const ahead = new Map<number, { part: Promise<Uint8Array[]> }>();
    let next = step;
    // Each part fetched ahead holds a slot until it is handed on, or dropped (settled or not) when the file stops early.
    const fetchAhead = () => {
      while (next < size && this.#budget.tryTake()) {
        const part = this.#part(entry, source, next, Math.min(step, size - next));
        // Handled where it is awaited; this keeps an unawaited failure (the restore stopped early) from crashing.
        part.catch(() => undefined);
        ahead.set(next, { part });
        next += step;
      }
    };
    try {
      fetchAhead();
      for await (const chunk of first.body) yield chunk;
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
          yield* this.#range(entry, source, offset, Math.min(step, size - offset));
        }
      }
    } finally {
      first.discard();
      for (let i = 0; i < ahead.size; i++) this.#budget.give();
    }
  }
}
