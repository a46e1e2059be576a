// The sender: packs the oldest unsent journal records of a set into one FIFO
// message, stages what is too large to travel inline, sends, and only then
// lets the records leave the journal.

import { join } from "node:path";
import { mapConcurrent } from "../contract/async.ts";
import { stagingKey } from "../contract/layout.ts";
import {
  MAX_INLINE_BYTES,
  MAX_MESSAGE_BYTES,
  WIRE_VERSION,
  deduplicationId,
  deltaContentSize,
  encodeInline,
  wireJson,
  type Compression,
  type WireRecord,
} from "../contract/wire.ts";
import type { Journal, JournalRecord } from "./journal.ts";
import type { StagedPayload, Transport } from "./transport/transport.ts";

/** A task marker in a packed message, with what the agent does around its sending. */
export type PackedMarker = Extract<JournalRecord, { op: "task" }>;

export interface PackedMessage {
  readonly body: string;
  readonly first: number;
  readonly last: number;
  readonly staged: StagedPayload[];
  readonly markers: PackedMarker[];
}

export interface SendResult {
  readonly records: number;
  readonly bytes: number;
}

/** Records read from the journal at a time while filling a message (bounds memory: content rides along). */
const PAGE = 64;
/** A message's staged payloads uploaded at once: one at a time leaves a link idle between objects. */
export const STAGE_CONCURRENCY = 4;

function toWire(set: string, spoolDir: string, record: JournalRecord, compression: Compression): { wire: WireRecord; staged?: StagedPayload } {
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
  if (record.op !== "put") return { wire: record };
  const { content, delta, blockHashes: _index, ...meta } = record;
  const wireMeta = delta ? { ...meta, delta: { base: delta.base, blocks: delta.blocks } } : meta;
  // A delta's staged object holds only its blocks: their size and hash, not the file's.
  const stagedSize = delta ? deltaContentSize(record.size, delta.blocks) : record.size;
  const stagedSha256 = delta ? delta.contentSha256 : record.sha256;
  const key = stagingKey(set, record.seq, record.sha256);
  if ("bytes" in content) {
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
  /** @default "zstd" */
  readonly compression?: Compression;
}

export interface SendOptions extends PackOptions {
  /** Where the set's next message is packed while the one before it is on the wire; without it, each message is packed when it is sent. */
  readonly ahead?: PackedAhead;
  /** Before a message holding markers is sent (ONTRANSMIT). */
  readonly beforeMarkers?: (set: string, markers: readonly PackedMarker[]) => Promise<void>;
  /** Once the queue accepted a message holding markers (ONRECEIVE). */
  readonly afterMarkers?: (set: string, markers: readonly PackedMarker[]) => Promise<void>;
}

/** Packs the next message of a set: its oldest unsent records (those after seq `after`, when given). */
export function packNext(journal: Journal, set: string, options: PackOptions = {}, after = 0): PackedMessage | undefined {
  const maxBytes = options.maxBytes ?? MAX_MESSAGE_BYTES;
  const compression = options.compression ?? "zstd";
  const envelope = JSON.stringify({ v: WIRE_VERSION, set, records: [] });
  let size = Buffer.byteLength(envelope);
  const parts: string[] = [];
  const staged: StagedPayload[] = [];
  const markers: PackedMarker[] = [];
  let first = 0;
  let last = 0;
  let cursor = after;
  fill: for (;;) {
    const page = journal.pending(set, cursor, PAGE);
    if (page.length === 0) break;
    for (const record of page) {
      const { wire, staged: payload } = toWire(set, journal.spoolDir, record, compression);
      const json = wireJson(wire);
      const length = Buffer.byteLength(json) + (parts.length > 0 ? 1 : 0);
      if (parts.length > 0 && size + length > maxBytes) break fill;
      parts.push(json);
      size += length;
      if (payload) staged.push(payload);
      if (record.op === "task") markers.push(record);
      if (first === 0) first = record.seq;
      last = record.seq;
    }
    cursor = last;
  }
  if (parts.length === 0) return undefined;
  // The envelope ends in "[]}": splice the records in between the brackets.
  const body = `${envelope.slice(0, -2)}${parts.join(",")}]}`;
  return { body, first, last, staged, markers };
}

/**
 * A set's next message, packed while the one before it was on the wire.
 * Records stay as they are until they are marked sent, so the message is
 * what packNext would give, as long as the one before it is what was marked
 * sent since, and (unless it was full) nothing was journaled since.
 */
export class PackedAhead {
  #held: { after: number; nextSeq: number; message: PackedMessage } | undefined;

  /** Packs the message after seq `after`, when more records wait than the one on the wire. */
  pack(journal: Journal, set: string, options: PackOptions, after: number): void {
    this.#held = undefined;
    const { nextSeq } = journal.counters(set);
    if (after >= nextSeq - 1) return;
    const message = packNext(journal, set, options, after);
    if (message) this.#held = { after, nextSeq, message };
  }

  /** The held message if it is still the set's next one; it is let go either way. */
  take(journal: Journal, set: string): PackedMessage | undefined {
    const held = this.#held;
    this.#held = undefined;
    if (!held) return undefined;
    const { sentSeq, nextSeq } = journal.counters(set);
    const full = held.message.last < held.nextSeq - 1;
    return sentSeq === held.after && (full || nextSeq === held.nextSeq) ? held.message : undefined;
  }
}

/** Sends the next message of a set; resolves with what left the journal (zero records when nothing was pending). */
export async function sendNext(journal: Journal, transport: Transport, set: string, options: SendOptions = {}): Promise<SendResult> {
  const packed = options.ahead?.take(journal, set) ?? packNext(journal, set, options);
  if (!packed) return { records: 0, bytes: 0 };
  if (packed.markers.length > 0) await options.beforeMarkers?.(set, packed.markers);
  // The message goes only once every payload it names is staged.
  await mapConcurrent(packed.staged, STAGE_CONCURRENCY, (payload) => transport.stage(payload));
  const sending = transport.send(set, deduplicationId(set, packed.first, packed.last), packed.body);
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
  await sending;
  const bytes = Buffer.byteLength(packed.body) + packed.staged.reduce((sum, p) => sum + p.size, 0);
  journal.markSent(set, packed.last, bytes);
  if (packed.markers.length > 0) await options.afterMarkers?.(set, packed.markers);
  return { records: packed.last - packed.first + 1, bytes };
}
