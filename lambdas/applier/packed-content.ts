// The applier's side of packed content (contract/packed-content.ts): a
// message's pack is read once, when its first packed record is checked, and
// counts only as what the signed message says it is (size and SHA-256); each
// record's slice is then checked like inline content.

import { createHash } from "node:crypto";
import { stagingKey } from "../../contract/layout.ts";
import { decompressed } from "../../contract/compression.ts";
import type { MessagePack, PackedContent } from "../../contract/packed-content.ts";
import { BadMessageError, MAX_INLINE_DECODED_BYTES, type WireMessage } from "../../contract/wire.ts";
import type { TargetStore } from "../store/store.ts";

export class MessagePackReader {
  readonly #store: TargetStore;
  readonly #pack: MessagePack | undefined;
  /** Where the pack waits: keyed by the message's first seq and the pack's SHA-256, never taken from the message. */
  readonly key: string | undefined;
  #loading: Promise<Buffer> | undefined;

  constructor(store: TargetStore, message: WireMessage) {
    this.#store = store;
    this.#pack = message.pack;
    const first = message.records[0]?.seq ?? 0;
    this.key = message.pack ? stagingKey(message.set, first, message.pack.sha256) : undefined;
  }

  /** Whether the pack was read (and may go once the checkpoint covers the message). */
  get read(): boolean {
    return this.#loading !== undefined;
  }

  /** The bytes of a packed record; BadMessageError when the pack or the slice is not what the message says. */
  async bytesOf(content: PackedContent, what: string): Promise<Buffer> {
    // An empty file packed by an agent before empty files went inline: the message may have no pack to read.
    if (content.length === 0 && content.encoding === "raw") return Buffer.alloc(0);
    const pack = await (this.#loading ??= this.#load());
    const slice = pack.subarray(content.offset, content.offset + content.length);
    if (content.encoding === "raw") return slice;
    try {
      return decompressed(slice, content.encoding, MAX_INLINE_DECODED_BYTES);
    } catch (error) {
      throw new BadMessageError(`packed content of ${what} does not decompress (${content.encoding}): ${(error as Error).message}`);
    }
  }

  async #load(): Promise<Buffer> {
    const { key } = this;
    if (!this.#pack || key === undefined) throw new BadMessageError("packed content in a message without a pack");
    const object = await this.#store.get(key);
    if (!object) throw new BadMessageError(`the message's pack is missing at ${key}`);
    if (object.body.length !== this.#pack.size) throw new BadMessageError(`the message's pack at ${key} is ${object.body.length} bytes, expected ${this.#pack.size}`);
    const sha256 = createHash("sha256").update(object.body).digest("hex");
    if (sha256 !== this.#pack.sha256) throw new BadMessageError(`the message's pack at ${key} has sha256 ${sha256}, not the ${this.#pack.sha256} its message names; nothing was written`);
    const { encoding, decodedSize } = this.#pack;
    if (encoding === undefined || decodedSize === undefined) return object.body;
    // Compressed as a whole (newer agents): the slices index the decompressed pack, exactly decodedSize bytes of it.
    let decoded: Buffer;
    try {
      decoded = decompressed(object.body, encoding, decodedSize, decodedSize);
    } catch (error) {
      throw new BadMessageError(`the message's pack at ${key} does not decompress (${encoding}) to the ${decodedSize} bytes its message names: ${(error as Error).message}`);
    }
    if (decoded.length !== decodedSize) throw new BadMessageError(`the message's pack at ${key} decompresses (${encoding}) to ${decoded.length} bytes, not the ${decodedSize} its message names`);
    return decoded;
  }
}
