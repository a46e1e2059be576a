// Chunk fingerprints (issue 17): 8 bytes for each 4 KiB of a file, kept in the
// index to find which chunks a write touched. Fast, not cryptographic: a
// change they miss is never applied silently, because the applier checks the
// rebuilt file against its SHA-256 and a mismatch puts the set out of sync
// (a resync repairs it). Computed here in plain JavaScript: Node has no fast
// non-cryptographic hash, and SHA-256 per 4 KiB costs several times more.

import { CHUNK_SIZE } from "../contract/delta-ranges.ts";

/** Bytes of one chunk's fingerprint. */
export const FINGERPRINT_BYTES = 8;

const PRIME = 0x01000193;

/** murmur3's finaliser: every input bit reaches every output bit. */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) | 0;
}

/**
 * Fingerprint of the first `length` (≤ CHUNK_SIZE) bytes of `bytes` (words is
 * the same memory as 32-bit words) written as two int32 at out[at], out[at + 1].
 * Four FNV-1a lanes over 32-bit words: each step is a bijection of the lane, so
 * changing any one word always changes its lane, and so the fingerprint.
 */
function fingerprint(bytes: Uint8Array, words: Int32Array, length: number, out: Int32Array, at: number): void {
  let a = 0x811c9dc5;
  let b = 0x2545f491;
  let c = 0x6c8e9cf5;
  let d = 0x9e3779b9 | 0;
  const whole = length >>> 2;
  let i = 0;
  for (; i + 4 <= whole; i += 4) {
    a = Math.imul(a ^ (words[i] ?? 0), PRIME);
    b = Math.imul(b ^ (words[i + 1] ?? 0), PRIME);
    c = Math.imul(c ^ (words[i + 2] ?? 0), PRIME);
    d = Math.imul(d ^ (words[i + 3] ?? 0), PRIME);
  }
  for (; i < whole; i++) a = Math.imul(a ^ (words[i] ?? 0), PRIME);
  for (let k = whole * 4; k < length; k++) b = Math.imul(b ^ (bytes[k] ?? 0), PRIME);
  out[at] = mix((a + Math.imul(c, 0x9e3779b1)) | 0);
  out[at + 1] = mix(((b + Math.imul(d, 0x85ebca77)) | 0) ^ length);
}

/** Fingerprints of each CHUNK_SIZE chunk of a stream, fed in pieces of any size and alignment. */
export class ChunkHasher {
  /** Aligned scratch: a chunk is copied here so its words can be read as an Int32Array. */
  readonly #scratch = Buffer.allocUnsafeSlow(CHUNK_SIZE);
  readonly #words = new Int32Array(this.#scratch.buffer, this.#scratch.byteOffset, CHUNK_SIZE / 4);
  #filled = 0;
  #out: Int32Array;
  #chunks = 0;

  /** expectedSize sizes the result up front (it grows when the stream is longer). */
  constructor(expectedSize = 0) {
    this.#out = new Int32Array(Math.max(2, Math.ceil(expectedSize / CHUNK_SIZE) * 2));
  }

  update(bytes: Uint8Array): void {
    let offset = 0;
    while (offset < bytes.length) {
      const take = Math.min(CHUNK_SIZE - this.#filled, bytes.length - offset);
      this.#scratch.set(bytes.subarray(offset, offset + take), this.#filled);
      this.#filled += take;
      offset += take;
      if (this.#filled === CHUNK_SIZE) this.#endChunk();
    }
  }

  #endChunk(): void {
    if ((this.#chunks + 1) * 2 > this.#out.length) {
      const grown = new Int32Array(this.#out.length * 2);
      grown.set(this.#out);
      this.#out = grown;
    }
    fingerprint(this.#scratch, this.#words, this.#filled, this.#out, this.#chunks * 2);
    this.#chunks += 1;
    this.#filled = 0;
  }

  /** The fingerprints of the whole chunks fed so far (a view: valid until the next update). */
  view(): Buffer {
    return Buffer.from(this.#out.buffer, this.#out.byteOffset, this.#chunks * FINGERPRINT_BYTES);
  }

  /** FINGERPRINT_BYTES for each chunk, concatenated (the last chunk may be short). */
  digest(): Buffer {
    if (this.#filled > 0) this.#endChunk();
    return this.view();
  }
}

/** Fingerprints of the chunks of bytes (a whole number of chunks, but the last). */
export function chunkFingerprints(bytes: Uint8Array): Buffer {
  const hasher = new ChunkHasher(bytes.length);
  hasher.update(bytes);
  return hasher.digest();
}

/** True when chunk `index` has the same fingerprint in both lists (false when either lacks it). */
export function sameChunk(a: Uint8Array, b: Uint8Array, index: number): boolean {
  const at = index * FINGERPRINT_BYTES;
  if (at + FINGERPRINT_BYTES > a.length || at + FINGERPRINT_BYTES > b.length) return false;
  for (let k = at; k < at + FINGERPRINT_BYTES; k++) if (a[k] !== b[k]) return false;
  return true;
}
