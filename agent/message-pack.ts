// The pack of a message (contract/packed-content.ts): the small files' bytes
// of one message in one staging object, when the set's backlog is larger than
// messages carry inline. A lone change still travels inline: a pack costs a
// staging PUT (and the target a GET and a DELETE) that only pays off when it
// saves many messages.

import { createHash } from "node:crypto";
import { stagingKey } from "../contract/layout.ts";
import { compressed } from "../contract/compression.ts";
import { MAX_PACK_BYTES, type MessagePack, type PackedContent } from "../contract/packed-content.ts";
import { MAX_INLINE_BYTES, wireJson, type Compression } from "../contract/wire.ts";
import type { Journal } from "./journal.ts";
import type { StagedPayload } from "./transport/transport.ts";

/** What the pack adds to a message's header, at most. */
export const PACK_HEADER_BYTES = Buffer.byteLength(wireJson({ pack: { size: MAX_PACK_BYTES, sha256: "0".repeat(64), encoding: "gzip", decodedSize: MAX_PACK_BYTES } }));

/** Packs when the set's unsent content would fill more than two messages inline. */
export function packWhen(journal: Journal, set: string, maxBytes: number, packBytes: number, whole: boolean): PackWriter | undefined {
  if (packBytes <= 0 || maxBytes <= 0) return undefined;
  return journal.sets.counters(set).backlogBytes > 2 * maxBytes ? new PackWriter(Math.min(packBytes, MAX_PACK_BYTES), whole) : undefined;
}

export class PackWriter {
  readonly #limit: number;
  /** The pack compressed as a whole; else each file on its own, the form appliers before whole packs read (applier-accepts.ts). */
  readonly #whole: boolean;
  #pieces: Uint8Array[] = [];
  #size = 0;
  #compression: Compression = "none";

  constructor(limit: number, whole: boolean) {
    this.#limit = limit;
    this.#whole = whole;
  }

  get size(): number {
    return this.#size;
  }

  /**
   * Adds a file's bytes, when they are no larger than inline content and the pack has room; else undefined. In a whole
   * pack they go in as they are and `finish` compresses the pack as a whole (a compressor set up per file cost more
   * than its work); otherwise each is compressed on its own here, the form every applier reads.
   */
  add(bytes: Uint8Array, compression: Compression): PackedContent | undefined {
    // An empty file goes inline: a zero-length slice could leave the message's only pack empty, and no pack is empty.
    if (bytes.length === 0 || bytes.length > MAX_INLINE_BYTES) return undefined;
    const own = this.#whole ? undefined : compressed(bytes, compression);
    const data = own?.data ?? bytes;
    if (this.#size + data.length > this.#limit) return undefined;
    if (this.#whole) this.#compression = compression;
    const offset = this.#size;
    this.#pieces.push(data);
    this.#size += data.length;
    return { kind: "packed", encoding: own?.codec ?? "raw", offset, length: data.length };
  }

  /** Drops what was added after the pack was `size` bytes long (a record that did not fit the message). */
  truncate(size: number): void {
    while (this.#size > size) {
      const last = this.#pieces.pop();
      if (!last) break;
      this.#size -= last.length;
    }
  }

  /** The pack of the message whose first record is `first`, to stage before the message is sent; undefined when empty. */
  finish(set: string, first: number): { pack: MessagePack; payload: StagedPayload } | undefined {
    if (this.#size === 0) return undefined;
    const decoded = Buffer.concat(this.#pieces);
    const whole = compressed(decoded, this.#compression, true);
    const bytes = whole?.data ?? decoded;
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    const pack: MessagePack = whole ? { size: bytes.length, sha256, encoding: whole.codec, decodedSize: decoded.length } : { size: bytes.length, sha256 };
    return { pack, payload: { set, key: stagingKey(set, first, sha256), sha256, size: bytes.length, source: { bytes } } };
  }
}
