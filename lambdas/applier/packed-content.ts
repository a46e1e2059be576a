// The applier's side of packed content (contract/packed-content.ts): a
// message's pack is read once, and counts only as what the signed message
// says it is (size and SHA-256); each record's slice is then checked like
// inline content. The read may start early (while the set's status is read,
// or while the batch's message before it writes its files: PackReads): it
// writes nothing, and what an early read got is used only as the read the
// message would have made itself; an early read that failed is made again.

import { createHash } from "node:crypto";
import { stagingKey } from "../../contract/layout.ts";
import { decompressed } from "../../contract/compression.ts";
import type { PackedContent } from "../../contract/packed-content.ts";
import { BadMessageError, MAX_INLINE_DECODED_BYTES, type WireMessage } from "../../contract/wire.ts";
import type { TargetStore } from "../store/store.ts";

/**
 * Reads of packs started ahead of their messages' checks within one invocation (batch-memory.ts): a message's own,
 * while its set's status is read, and the batch's next message's, while this one writes its files. Each is found by
 * everything its message says of the pack (the key holds its SHA-256) and taken once. One read not taken is held at a
 * time: a new one lets go of the one held (whose message was refused, a duplicate, or never came: nothing takes it
 * any more, as a message takes its own read before the next one's starts), and none starts while one let go is still
 * running. So besides the pack of the message being applied, one pack at most is in memory, however many messages of
 * a batch are refused.
 */
export class PackReads {
  readonly #reads = new Map<string, Promise<Buffer>>();
  /** Every read started and not yet settled, taken or not: none may go on after the invocation (settle). */
  readonly #running = new Set<Promise<void>>();
  /** Reads started, not taken and not settled. */
  readonly #untaken = new Set<Promise<Buffer>>();

  /** Starts reading the message's pack, unless it has none, its read is started, or one let go still runs. */
  start(store: TargetStore, message: WireMessage): void {
    const id = packId(message);
    if (id === undefined || this.#reads.has(id)) return;
    this.#reads.clear();
    // Its message reads the pack in its turn, as without a read ahead.
    if (this.#untaken.size > 0) return;
    const loading = loadPack(store, message);
    this.#untaken.add(loading);
    // Its failure is the message's to see, when it reads its pack again (MessagePackReader).
    const settled = () => {
      this.#running.delete(running);
      this.#untaken.delete(loading);
    };
    const running: Promise<void> = loading.then(settled, settled);
    this.#running.add(running);
    this.#reads.set(id, loading);
  }

  /** The read started for this message's pack, if any; taken once. */
  take(message: WireMessage): Promise<Buffer> | undefined {
    const id = packId(message);
    const loading = id === undefined ? undefined : this.#reads.get(id);
    if (id !== undefined) this.#reads.delete(id);
    if (loading) this.#untaken.delete(loading);
    return loading;
  }

  /**
   * Resolves once every read started has settled (never rejects): a read whose message never took it (refused, a
   * duplicate, or after the batch stopped at an earlier failure) ends inside its invocation, not in a frozen one.
   */
  async settle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running]);
  }

  /** How many reads are held (tests). */
  get size(): number {
    return this.#reads.size;
  }
}

function packId(message: WireMessage): string | undefined {
  const { pack } = message;
  if (!pack) return undefined;
  return JSON.stringify([packKey(message), pack.size, pack.encoding ?? null, pack.decodedSize ?? null]);
}

export class MessagePackReader {
  readonly #store: TargetStore;
  readonly #message: WireMessage;
  /** Where the pack waits: keyed by the message's first seq and the pack's SHA-256, never taken from the message. */
  readonly key: string | undefined;
  #early: Promise<Buffer> | undefined;
  #loading: Promise<Buffer> | undefined;
  #used = false;

  /** early: a read of this message's pack started before (PackReads); failed, the pack is read again. */
  constructor(store: TargetStore, message: WireMessage, early?: Promise<Buffer>) {
    this.#store = store;
    this.#message = message;
    this.#early = early;
    this.key = packKey(message);
  }

  /** Whether a record's content was taken from the pack (which may then go once the checkpoint covers the message). */
  get read(): boolean {
    return this.#used;
  }

  /** The bytes of a packed record; BadMessageError when the pack or the slice is not what the message says. */
  async bytesOf(content: PackedContent, what: string): Promise<Buffer> {
    // An empty file packed by an agent before empty files went inline: the message may have no pack to read.
    if (content.length === 0 && content.encoding === "raw") return Buffer.alloc(0);
    this.#used = true;
    const early = this.#early;
    const pack = await (this.#loading ??= early ? early.catch(() => loadPack(this.#store, this.#message)) : loadPack(this.#store, this.#message));
    const slice = pack.subarray(content.offset, content.offset + content.length);
    if (content.encoding === "raw") return slice;
    try {
      return decompressed(slice, content.encoding, MAX_INLINE_DECODED_BYTES);
    } catch (error) {
      throw new BadMessageError(`packed content of ${what} does not decompress (${content.encoding}): ${(error as Error).message}`);
    }
  }
}

/** Where a message's pack waits (undefined: it has none). */
function packKey(message: WireMessage): string | undefined {
  return message.pack ? stagingKey(message.set, message.records[0]?.seq ?? 0, message.pack.sha256) : undefined;
}

/** A message's pack, read and checked against what the message says of it (decompressed when packed whole). */
async function loadPack(store: TargetStore, message: WireMessage): Promise<Buffer> {
  const pack = message.pack;
  const key = packKey(message);
  if (!pack || key === undefined) throw new BadMessageError("packed content in a message without a pack");
  const object = await store.get(key);
  if (!object) throw new BadMessageError(`the message's pack is missing at ${key}`);
  if (object.body.length !== pack.size) throw new BadMessageError(`the message's pack at ${key} is ${object.body.length} bytes, expected ${pack.size}`);
  const sha256 = createHash("sha256").update(object.body).digest("hex");
  if (sha256 !== pack.sha256) throw new BadMessageError(`the message's pack at ${key} has sha256 ${sha256}, not the ${pack.sha256} its message names; nothing was written`);
  const { encoding, decodedSize } = pack;
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
