// Applying a delta put (issue 17): the new file is the base the target holds
// with the delta's ranges (or blocks) written over it, checked against the
// record's SHA-256 before it replaces anything. A file up to
// IN_MEMORY_REBUILD_BYTES is rebuilt in memory; a larger one is streamed
// part by part (a ranged read of the base per part, a multipart upload whose
// SHA-256 is checked before it completes), so no file is ever held whole.
// Parts no range touches are copied server-side from the base (UploadPartCopy)
// rather than uploaded: the bytes are still read for the SHA-256, but a page
// write or two after a busy database went quiet uploads a part or two.

import { createHash } from "node:crypto";
import { deltaPieces, type Piece } from "../../contract/delta-ranges.ts";
import { META } from "../../contract/layout.ts";
import { deltaBytes, deltaRanges, type PutRecord } from "../../contract/wire.ts";
import { CopiedPartMismatchError } from "../s3-multipart.ts";
import { ContentMismatchError, type TargetStore, type WriteResult } from "../store/store.ts";
import { writtenBy } from "./write-stamps.ts";

/** Files up to this size are rebuilt in memory: one GET of the base, one PUT. */
export const IN_MEMORY_REBUILD_BYTES = 64 * 1024 * 1024;
/** A staged delta is read ahead this much at a time: its ranges are many and small. */
const STAGED_WINDOW = 8 * 1024 * 1024;

/** The target does not hold what the delta was made against: only a resync repairs it. */
export class DeltaBaseError extends Error {
  override name = "DeltaBaseError";
}

export type DeltaPut = PutRecord & { delta: NonNullable<PutRecord["delta"]> };

/** The delta's content: bytes from the message, or a staged object (checked for its size). */
export type DeltaContent = { bytes: Buffer } | { staged: string };

export interface DeltaOptions {
  /** @default IN_MEMORY_REBUILD_BYTES */
  readonly inMemoryBytes?: number;
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Writes the new content of a delta put at key (the file's live object) with meta; DeltaBaseError when the base is not there. */
export async function applyDelta(store: TargetStore, key: string, record: DeltaPut, content: DeltaContent, meta: Record<string, string>, options: DeltaOptions = {}): Promise<WriteResult> {
  const head = await store.head(key);
  if (!head) throw new DeltaBaseError(`delta base of ${record.path} is missing on the target`);
  const pieces = deltaPieces(record.size, deltaRanges(record.size, record.delta));
  const streamed = record.size > (options.inMemoryBytes ?? IN_MEMORY_REBUILD_BYTES) && store.getRange !== undefined && store.putStreamed !== undefined;
  // Applied already (a retried message whose checkpoint had not moved yet): the target holds the new content. An object
  // this very record wrote says so in its stamp (that write checked the content); any other is read to tell.
  if (head.meta[META.sha256] === record.sha256 && (writtenBy(head.meta, meta) || (await holds(store, key, record.sha256, streamed)))) {
    return store.copy(key, key, meta);
  }
  if (head.meta[META.sha256] !== record.delta.base) throw new DeltaBaseError(`delta base of ${record.path} is not the content the agent changed`);
  const baseEnd = pieces.reduce((end, piece) => (piece.source === "base" ? piece.offset + piece.length : end), 0);
  if (baseEnd > head.size) throw new DeltaBaseError(`delta base of ${record.path} is ${head.size} bytes, shorter than the ${baseEnd} the delta keeps`);
  if (streamed) return rebuildStreamed(store, key, record, content, pieces, head.size, meta);
  return rebuildInMemory(store, key, record, content, pieces, meta);
}

/** True when the object at key has this SHA-256 (read as a stream for a large file). */
async function holds(store: TargetStore, key: string, expected: string, large: boolean): Promise<boolean> {
  if (large && store.hash) return (await store.hash(key))?.sha256 === expected;
  const object = await store.get(key);
  return object !== undefined && sha256(object.body) === expected;
}

async function rebuildInMemory(store: TargetStore, key: string, record: DeltaPut, content: DeltaContent, pieces: readonly Piece[], meta: Record<string, string>): Promise<WriteResult> {
  const base = await store.get(key);
  if (!base) throw new DeltaBaseError(`delta base of ${record.path} is missing on the target`);
  const delta = "bytes" in content ? content.bytes : (await store.get(content.staged))?.body;
  if (!delta) throw new DeltaBaseError(`staged delta of ${record.path} vanished`);
  if (delta.length !== deltaBytes(record.size, record.delta)) throw new DeltaBaseError(`staged delta of ${record.path} changed size`);
  const out = Buffer.alloc(record.size);
  for (const piece of pieces) {
    if (piece.source === "base") base.body.copy(out, piece.offset, piece.offset, piece.offset + piece.length);
    else delta.copy(out, piece.offset, piece.from, piece.from + piece.length);
  }
  if (sha256(out) !== record.sha256) throw new DeltaBaseError(`rebuilt ${record.path} does not match its sha256`);
  return store.put(key, out, meta, { sha256: record.sha256 });
}

/** Index of the first piece that ends after offset (pieces in order: a binary search). */
function firstPieceAfter(pieces: readonly Piece[], offset: number): number {
  let low = 0;
  let high = pieces.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    const piece = pieces[mid];
    if (piece && piece.offset + piece.length <= offset) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** True when some piece of delta content lies in [offset, offset + length). */
function deltaWithin(pieces: readonly Piece[], offset: number, length: number): boolean {
  for (let i = firstPieceAfter(pieces, offset); i < pieces.length; i++) {
    const piece = pieces[i];
    if (!piece || piece.offset >= offset + length) return false;
    if (piece.source === "delta") return true;
  }
  return false;
}

/** True when a piece of base lies among pieces[from...] before end. */
function baseWithin(pieces: readonly Piece[], from: number, end: number): boolean {
  for (let i = from; i < pieces.length; i++) {
    const piece = pieces[i];
    if (!piece || piece.offset >= end) return false;
    if (piece.source === "base") return true;
  }
  return false;
}

async function rebuildStreamed(store: TargetStore, key: string, record: DeltaPut, content: DeltaContent, pieces: readonly Piece[], baseSize: number, meta: Record<string, string>): Promise<WriteResult> {
  const { getRange, putStreamed } = store;
  if (!getRange || !putStreamed) throw new Error("internal: a streamed rebuild needs a store that reads ranges and writes streams");
  const ranged = async (from: string, offset: number, length: number, what: string) => {
    const bytes = await getRange.call(store, from, offset, length);
    if (!bytes || bytes.length !== length) throw new DeltaBaseError(`${what} of ${record.path} changed while it was rebuilt`);
    return bytes;
  };
  const stagedSize = deltaBytes(record.size, record.delta);
  let window: { start: number; bytes: Buffer } | undefined;
  const staged = async (from: string, at: number, length: number) => {
    if (!window || at < window.start || at + length > window.start + window.bytes.length) {
      window = { start: at, bytes: await ranged(from, at, Math.min(Math.max(length, STAGED_WINDOW), stagedSize - at), "staged delta") };
    }
    return window.bytes.subarray(at - window.start, at - window.start + length);
  };
  // Several parts are read at once (putInParts): each finds its own first piece.
  const read = async (offset: number, length: number): Promise<Uint8Array> => {
    const end = offset + length;
    const next = firstPieceAfter(pieces, offset);
    // The base under the whole stretch in one ranged read (not one per piece: a page write every few KiB makes
    // thousands), with the delta's bytes written over it.
    const fromBase = Math.min(end, baseSize) - offset;
    const base = fromBase > 0 && baseWithin(pieces, next, end) ? await ranged(key, offset, fromBase, "delta base") : undefined;
    const out = base && fromBase === length ? base : Buffer.alloc(length);
    if (base && out !== base) base.copy(out);
    for (let i = next; i < pieces.length; i++) {
      const piece = pieces[i];
      if (!piece || piece.offset >= end) break;
      if (piece.source === "base") continue;
      const at = Math.max(piece.offset, offset);
      const take = Math.min(piece.offset + piece.length, end) - at;
      const from = piece.from + at - piece.offset;
      const bytes = "bytes" in content ? content.bytes.subarray(from, from + take) : await staged(content.staged, from, take);
      bytes.copy(out, at - offset);
    }
    return out;
  };
  // Parts no delta range touches are the base's bytes: a store that can copies them server-side.
  const untouched = (offset: number, length: number) => offset + length <= baseSize && !deltaWithin(pieces, offset, length);
  try {
    return await putStreamed.call(store, key, { size: record.size, sha256: record.sha256, read, copyFrom: { key, untouched } }, meta);
  } catch (error) {
    if (error instanceof ContentMismatchError || error instanceof CopiedPartMismatchError) throw new DeltaBaseError(`rebuilt ${record.path} does not match its sha256`);
    throw error;
  }
}
