// The sender: packs the oldest unsent journal records of a set into one FIFO
// message, stages what is too large to travel inline, sends, and only then
// lets the records leave the journal. A record the target refuses for good is
// taken out of the stream (poison.ts), so the rest of the set keeps flowing.

import { join } from "node:path";
import { mapConcurrentUntilFailure } from "../contract/async.ts";
import { stagingKey } from "../contract/layout.ts";
import {
  MAX_INLINE_BYTES,
  MAX_MESSAGE_BYTES,
  WIRE_VERSION,
  deduplicationId,
  deltaBytes,
  encodeInline,
  joinMessage,
  wireJson,
  type Compression,
  type MessageHeader,
  type WireRecord,
} from "../contract/wire.ts";
import type { Journal, JournalRecord } from "./journal.ts";
import { RecordRefusedError, skipRefusedRecord, type SkippedRecord } from "./poison.ts";
import { markerWithoutList, SpoolContentLostError } from "./spool-folder.ts";
import { DeliveryRefusedError, type StagedPayload, type Transport } from "./transport/transport.ts";
import { MAX_PACK_BYTES } from "../contract/packed-content.ts";
import { PACK_HEADER_BYTES, packWhen, type PackWriter } from "./message-pack.ts";
import { endsMessageBefore, stageNamed, uploadLabel } from "./staged-uploads.ts";

/** A task marker in a packed message, with what the agent does around its sending. */
export type PackedMarker = Extract<JournalRecord, { op: "task" }>;

/** A staged payload and the seq of the record it belongs to. */
export type PackedPayload = StagedPayload & { readonly seq: number; /** The message's pack (message-pack.ts), not one record's content. */ readonly pack?: true; /** What it holds, named in status while a large one is staged. */ readonly what: string };

export interface PackedMessage {
  readonly body: string;
  readonly first: number;
  readonly last: number;
  readonly staged: PackedPayload[];
  readonly markers: PackedMarker[];
  /** The journal generation the message carries (DESIGN 8). */
  readonly gen: string;
}

export interface SendResult {
  readonly records: number;
  readonly bytes: number;
}

/** Records read from the journal at a time while filling a message (bounds memory: content rides along). */
const PAGE = 64;
/** A message's staged payloads uploaded at once: one at a time leaves a link idle between objects. */
export const STAGE_CONCURRENCY = 4;

function toWire(set: string, spoolDir: string, record: JournalRecord, compression: Compression, pack?: PackWriter): { wire: WireRecord; staged?: StagedPayload } {
  if (record.op === "verify") {
    // The manifest is gzip'ed already: it travels like a whole put's content.
    const { content, ...meta } = record;
    const key = stagingKey(set, record.seq, record.sha256);
    const source = "bytes" in content ? { bytes: content.bytes } : { file: join(spoolDir, content.spool) };
    if ("bytes" in content) {
      const inline = encodeInline(content.bytes, "none");
      if (inline.data.length <= MAX_INLINE_BYTES) return { wire: { ...meta, content: inline } };
    }
    return { wire: { ...meta, content: { kind: "staged" } }, staged: { set, key, sha256: record.sha256, size: record.size, source } };
  }
  if (record.op === "block") {
    const { content, ...meta } = record;
    if (!("bytes" in content)) return { wire: { ...meta, content: { kind: "zero" } } };
    const inline = encodeInline(content.bytes, compression);
    if (inline.data.length <= MAX_INLINE_BYTES) return { wire: { ...meta, content: inline } };
    const staged = { set, key: stagingKey(set, record.seq, record.sha256), sha256: record.sha256, size: content.bytes.length, source: { bytes: content.bytes } };
    return { wire: { ...meta, content: { kind: "staged" } }, staged };
  }
  if (record.op === "task") {
    const { onTransmit: _sourceOnly, fields, content, digest, ...marker } = record;
    if (!digest) return { wire: { ...fields, ...marker } };
    const { list, ...counts } = digest;
    if (!list || !content) return { wire: { ...fields, ...marker, digest: counts } };
    // The digest's list is gzip'ed already: it travels like a verify manifest.
    if ("bytes" in content) {
      const inline = encodeInline(content.bytes, "none");
      if (inline.data.length <= MAX_INLINE_BYTES) return { wire: { ...fields, ...marker, digest: { ...counts, list: { ...list, content: inline } } } };
    }
    const key = stagingKey(set, record.seq, list.sha256);
    const source = "bytes" in content ? { bytes: content.bytes } : { file: join(spoolDir, content.spool) };
    return { wire: { ...fields, ...marker, digest: { ...counts, list: { ...list, content: { kind: "staged" } } } }, staged: { set, key, sha256: list.sha256, size: list.size, source } };
  }
  if (record.op === "skip") return { wire: { seq: record.seq, op: "skip" } };
  if (record.op !== "put") return { wire: record };
  const { content, delta, blockHashes: _index, chunkHashes: _chunks, ...meta } = record;
  const wireMeta = delta ? { ...meta, delta: { base: delta.base, blocks: delta.blocks, ...(delta.ranges ? { ranges: delta.ranges } : {}) } } : meta;
  // A delta's staged object holds only its blocks (or ranges): their size and hash, not the file's.
  const stagedSize = delta ? deltaBytes(record.size, delta) : record.size;
  const stagedSha256 = delta ? delta.contentSha256 : record.sha256;
  const key = stagingKey(set, record.seq, record.sha256);
  if ("bytes" in content) {
    const packed = pack?.add(content.bytes, compression);
    if (packed) return { wire: { ...wireMeta, content: packed } };
    const inline = encodeInline(content.bytes, compression);
    if (inline.data.length <= MAX_INLINE_BYTES) return { wire: { ...wireMeta, content: inline } };
    return {
      wire: { ...wireMeta, content: { kind: "staged" } },
      staged: { set, key, sha256: stagedSha256, size: stagedSize, source: { bytes: content.bytes } },
    };
  }
  return {
    wire: { ...wireMeta, content: { kind: "staged" } },
    staged: { set, key, sha256: stagedSha256, size: stagedSize, source: { file: join(spoolDir, content.spool) } },
  };
}

/** Packs the next message of a set from the journal, or returns undefined when nothing is pending. */
export interface PackOptions {
  /** @default MAX_MESSAGE_BYTES */
  readonly maxBytes?: number;
  /** Largest pack of a message (packed-content.ts); 0 never packs. @default MAX_PACK_BYTES */
  readonly packBytes?: number;
  /** @default "zstd" */
  readonly compression?: Compression;
  /** The pack compressed as a whole, which only appliers that announce it read (applier-accepts.ts); else each file on its own. @default false */
  readonly wholePacks?: boolean;
}

export interface SendOptions extends PackOptions {
  /** Where the set's next message is packed while the one before it is on the wire; without it, each message is packed when it is sent. */
  readonly ahead?: PackedAhead;
  /** Before a message holding markers is sent, once its payloads are staged (ONTRANSMIT). */
  readonly beforeMarkers?: (set: string, markers: readonly PackedMarker[]) => Promise<void>;
  /** Once the queue accepted a message holding markers (ONRECEIVE). */
  readonly afterMarkers?: (set: string, markers: readonly PackedMarker[]) => Promise<void>;
  /** A record the target refused for good left the stream (a skip record holds its seq). */
  readonly onSkipped?: (set: string, skipped: SkippedRecord, reason: string) => void;
}

/** Packs the next message of a set: its oldest unsent records (those after seq `after`, when given). */
export function packNext(journal: Journal, set: string, options: PackOptions = {}, after = 0): PackedMessage | undefined {
  const maxBytes = options.maxBytes ?? MAX_MESSAGE_BYTES;
  const compression = options.compression ?? "zstd";
  const gen = journal.sets.generation(set).id;
  const header: MessageHeader = { v: WIRE_VERSION, set, gen };
  const pack = packWhen(journal, set, maxBytes, options.packBytes ?? MAX_PACK_BYTES, options.wholePacks ?? false);
  let size = Buffer.byteLength(joinMessage(header, [])) + (pack ? PACK_HEADER_BYTES : 0);
  const parts: string[] = [];
  const staged: PackedPayload[] = [];
  const markers: PackedMarker[] = [];
  let first = 0;
  let last = 0;
  let cursor = after;
  fill: for (;;) {
    const page = journal.pending(set, cursor, PAGE);
    if (page.length === 0) break;
    for (const record of page) {
      const packedBefore = pack?.size ?? 0;
      const { wire, staged: payload } = toWire(set, journal.spoolDir, record, compression, pack);
      const json = wireJson(wire);
      const length = Buffer.byteLength(json) + (parts.length > 0 ? 1 : 0);
      // Records before a large staged payload (but those with a large upload of their own) do not wait for its upload.
      if (parts.length > 0 && (size + length > maxBytes || endsMessageBefore(payload, parts.length, staged))) {
        pack?.truncate(packedBefore);
        break fill;
      }
      parts.push(json);
      size += length;
      if (payload) staged.push({ ...payload, seq: record.seq, what: uploadLabel(record) });
      if (record.op === "task") markers.push(record);
      if (first === 0) first = record.seq;
      last = record.seq;
    }
    cursor = last;
  }
  if (parts.length === 0) return undefined;
  const packed = pack?.finish(set, first);
  if (packed) staged.push({ ...packed.payload, seq: first, pack: true, what: "the message's pack" });
  const body = joinMessage(packed ? { ...header, pack: packed.pack } : header, parts);
  return { body, first, last, staged, markers, gen };
}

/**
 * A set's next message, packed while the one before it was on the wire.
 * Records stay as they are until they are marked sent, so the message is
 * what packNext would give, as long as the one before it is what was marked
 * sent since, and (unless it was full) nothing was journaled since.
 */
export class PackedAhead {
  #held: { after: number; nextSeq: number; revision: number; wholePacks: boolean; message: PackedMessage } | undefined;

  /** Packs the message after seq `after`, when more records wait than the one on the wire. */
  pack(journal: Journal, set: string, options: PackOptions, after: number): void {
    this.#held = undefined;
    const { nextSeq } = journal.sets.counters(set);
    if (after >= nextSeq - 1) return;
    const revision = journal.revision;
    const message = packNext(journal, set, options, after);
    if (message) this.#held = { after, nextSeq, revision, wholePacks: options.wholePacks ?? false, message };
  }

  /** Lets the held message go: the records it holds were changed. */
  drop(): void {
    this.#held = undefined;
  }

  /**
   * The held message if it is still the set's next one; it is let go either way. wholePacks: whether the applier
   * reads whole packs now; one packed whole before it stopped saying so would be refused.
   */
  take(journal: Journal, set: string, wholePacks = false): PackedMessage | undefined {
    const held = this.#held;
    this.#held = undefined;
    if (!held) return undefined;
    const { sentSeq, nextSeq } = journal.sets.counters(set);
    const full = held.message.last < held.nextSeq - 1;
    const sameGeneration = held.message.gen === journal.sets.generation(set).id;
    // A record replaced since (a lost spool's repair, a skip) may be one the message holds as it was.
    const unchanged = held.revision === journal.revision;
    const readable = wholePacks || !held.wholePacks;
    return sentSeq === held.after && sameGeneration && unchanged && readable && (full || nextSeq === held.nextSeq) ? held.message : undefined;
  }
}

/**
 * Sends the next message of a set; resolves with what left the journal (zero
 * records when nothing was pending). A record the target refuses for good is
 * skipped, and the message is packed again without it.
 */
export async function sendNext(journal: Journal, transport: Transport, set: string, options: SendOptions = {}): Promise<SendResult> {
  let attempt = options;
  // What a failed pass staged whole: packed again at once, the message does not upload it a second time.
  const intact = new Set<string>();
  for (;;) {
    try {
      return await sendPacked(journal, transport, set, attempt, undefined, intact);
    } catch (error) {
      if (error instanceof PackRefusedError && attempt.packBytes !== 0) {
        // No record is at fault: the same records go without a pack, their content inline or staged one by one.
        options.ahead?.drop();
        attempt = { ...options, ahead: undefined, packBytes: 0 };
        continue;
      }
      if (!(error instanceof RecordRefusedError)) throw error;
      options.ahead?.drop();
      // A marker whose spooled digest list is gone goes on without it (spool-folder.ts), never skipped.
      if (error.cause instanceof SpoolContentLostError && markerWithoutList(journal, set, error.seq)) continue;
      const reason = error.cause instanceof Error ? error.cause.message : error.message;
      const skipped = await skipRefusedRecord(journal, set, error.seq, reason);
      // Already a skip (or sent): nothing left to take out, and trying again at once would spin.
      if (!skipped) throw error;
      options.onSkipped?.(set, skipped, reason);
    }
  }
}

/** The target refused a message's pack for good: the message goes again without one. */
class PackRefusedError extends Error {
  override name = "PackRefusedError";
}

/** A refusal of a payload names its record (or the pack); anything else stays as it was. */
function refusedRecord(payload: PackedPayload) {
  return (error: unknown): never => {
    if (!(error instanceof DeliveryRefusedError)) throw error;
    throw payload.pack ? new PackRefusedError(`the pack ${payload.key} was refused: ${error.message}`, { cause: error }) : new RecordRefusedError(payload.seq, error);
  };
}

/** A staged payload as a failed pass left it in staging: the same key with the same bytes. */
function stagedId(payload: PackedPayload): string {
  return `${payload.key}\n${payload.sha256}`;
}

async function sendPacked(journal: Journal, transport: Transport, set: string, options: SendOptions, only?: number, intact: Set<string> = new Set()): Promise<SendResult> {
  const packed = (only === undefined ? options.ahead?.take(journal, set, options.wholePacks) : undefined) ?? packNext(journal, set, only === undefined ? options : { ...options, maxBytes: 0 }, only ?? 0);
  if (!packed) return { records: 0, bytes: 0 };
  // The message goes only once every payload it names is staged. A failed stage starts no more and lets those going
  // settle: the message is staged again (without a refused record), and the same keys must not upload twice at once.
  const toStage = packed.staged.filter((payload) => !intact.has(stagedId(payload)));
  await mapConcurrentUntilFailure(toStage, STAGE_CONCURRENCY, async (payload) => {
    await stageNamed(journal, transport, payload).catch(refusedRecord(payload));
    intact.add(stagedId(payload));
  });
  // Just before the message goes, not before its uploads: a marker after a large file shares its message, whose
  // upload takes minutes.
  if (packed.markers.length > 0) await options.beforeMarkers?.(set, packed.markers);
  const sending = transport.send(set, deduplicationId(set, packed.first, packed.last, packed.gen), packed.body).catch(async (error: unknown) => {
    if (!(error instanceof DeliveryRefusedError)) throw error;
    if (packed.first === packed.last) throw new RecordRefusedError(packed.first, error);
    // Which record the queue refused is not said: send them one a message, to find it.
    options.ahead?.drop();
    return sendOneByOne(journal, transport, set, options, packed.first, packed.last, intact);
  });
  if (options.ahead) {
    // Its failure is handled below, once the next message is packed.
    sending.catch(() => undefined);
    // Let the request leave before packing (synchronous work) the next message.
    await new Promise((resolve) => setImmediate(resolve));
    try {
      options.ahead.pack(journal, set, options, packed.last);
    } catch {
      // Packed again when it is sent, where a failure is reported.
    }
  }
  const alone = await sending;
  if (alone) return alone;
  const bytes = Buffer.byteLength(packed.body) + packed.staged.reduce((sum, p) => sum + p.size, 0);
  journal.markSent(set, packed.last, bytes);
  if (packed.markers.length > 0) await options.afterMarkers?.(set, packed.markers);
  return { records: packed.last - packed.first + 1, bytes };
}

/**
 * Sends the records first..last one a message; a refused one surfaces as RecordRefusedError once those before it are
 * sent. What the whole message staged (`intact`) is not uploaded again: each record's staging key is the same alone.
 */
async function sendOneByOne(journal: Journal, transport: Transport, set: string, options: SendOptions, first: number, last: number, intact: Set<string>): Promise<SendResult> {
  let records = 0;
  let bytes = 0;
  for (let seq = first; seq <= last; seq++) {
    const sent = await sendPacked(journal, transport, set, { ...options, ahead: undefined }, seq - 1, intact);
    records += sent.records;
    bytes += sent.bytes;
  }
  return { records, bytes };
}
