// Wire format v1 (DESIGN 6): one message carries a contiguous run of records
// of one set. The agent builds messages with these types; the applier accepts
// nothing that `parseMessage` has not validated.

import { createHash } from "node:crypto";
import { z } from "zod";
import { ORPHAN_POLICIES } from "./layout.ts";
import { ChangingWhileReadSchema, NotReplicatedAtMarkerSchema, TaskFieldsSchema, TaskIdSchema } from "./tasks.ts";
import { DrillReportSchema } from "./drills.ts";
import {
  LINK_GROUP_PATTERN,
  LinkGroup,
  MAX_MODE,
  MAX_SEQ,
  MAX_SIZE,
  MIN_SEQ,
  MTIME_NS_PATTERN,
  ManifestEntrySchema,
  Mode,
  MtimeNs,
  SHA256_PATTERN,
  Seq,
  SetName,
  SetPath,
  Sha256,
  Size,
  type ManifestEntry,
} from "./manifest-entry.ts";
import { SetDigestSchema } from "./digest.ts";
import { MAX_DELTA_RANGES, MAX_RANGED_FILE_BYTES, rangesBytes, rangesProblem, type ByteRange } from "./delta-ranges.ts";
import { MAX_PACK_BYTES, MessagePack, PACK_ENCODINGS, PACKED_ENCODINGS, PackedContent, packedBytes } from "./packed-content.ts";
import { setNameProblem, setPathProblem } from "./paths.ts";
import { compressed, decompressed, type Compression } from "./compression.ts";

export const WIRE_VERSION = 1;

/** Budget for one message body: ten of them stay well under Lambda's 6 MB synchronous payload. */
export const MAX_MESSAGE_BYTES = 400 * 1024;
/** Content whose encoded form is larger than this travels as a staging object. */
export const MAX_INLINE_BYTES = 192 * 1024;
export const MAX_LINK_TARGET_BYTES = 4096;
/** Largest file the agent inlines (before compression); bigger files are always staged. Bounds gunzip too. */
export const MAX_INLINE_DECODED_BYTES = 1024 * 1024;

/**
 * Block size of delta puts (and of EBS volumes): a change inside a large file
 * travels as the blocks that changed, each BLOCK_SIZE long but the file's last.
 */
export const BLOCK_SIZE = 512 * 1024;
/** Largest file a delta of blocks may describe; a ranged delta (delta-ranges.ts) goes up to MAX_RANGED_FILE_BYTES. */
export const MAX_DELTA_FILE_BYTES = 512 * 1024 * 1024;

/** Number of blocks of a file of this size. */
export function blockCount(size: number): number {
  return Math.ceil(size / BLOCK_SIZE);
}

/** Length of block index of a file of this size (the last block may be short). */
export function blockLength(size: number, index: number): number {
  return Math.max(0, Math.min(BLOCK_SIZE, size - index * BLOCK_SIZE));
}

/** Bytes a delta carries: the listed blocks of the new content, concatenated in order. */
export function deltaContentSize(size: number, blocks: readonly number[]): number {
  return blocks.reduce((sum, index) => sum + blockLength(size, index), 0);
}

/** What a delta says about the content it carries: blocks, or byte ranges (then its blocks are empty). */
export interface DeltaShape {
  readonly blocks: readonly number[];
  readonly ranges?: readonly ByteRange[] | undefined;
}

/** The byte ranges of the new file a delta carries, in order. */
export function deltaRanges(size: number, delta: DeltaShape): readonly ByteRange[] {
  return delta.ranges ?? delta.blocks.map((index): ByteRange => [index * BLOCK_SIZE, blockLength(size, index)]);
}

/** Bytes a delta carries: its ranges (or blocks) of the new content, concatenated in order. */
export function deltaBytes(size: number, delta: DeltaShape): number {
  return delta.ranges ? rangesBytes(delta.ranges) : deltaContentSize(size, delta.blocks);
}

export class BadMessageError extends Error {
  override name = "BadMessageError";
}

/*
 * The schemas marked "checked by hand" below are also checked, rule for rule, by commonMessage (the end of this file)
 * for puts and folders: a rule added or tightened in one of them must be added there too. The bounds, patterns and
 * allowed values they share are the constants here, in manifest-entry.ts and in packed-content.ts; what a refinement
 * checks is copied, and test/unit/wire-common-messages.test.ts takes its boundary values and key sets from the schemas.
 */

/** Largest `at`: any safe integer. */
export const MAX_RECORD_AT = Number.MAX_SAFE_INTEGER;
/** Most records in one message. */
export const MAX_MESSAGE_RECORDS = 10_000;
/** How inline content is encoded. */
export const INLINE_ENCODINGS = ["base64", "gzip+base64", "zstd+base64"] as const;
export const GENERATION_ID_PATTERN = /^[A-Za-z0-9]{1,16}$/;

/**
 * When the agent journaled the record (ms since the epoch): what `restore --at`
 * goes by. Optional, so messages of older agents still parse. Checked by hand in commonRecord.
 */
const RecordAt = z.number().int().min(0).max(MAX_RECORD_AT).optional();

/** Checked by hand in commonContent. */
const InlineContent = z.object({
  kind: z.literal("inline"),
  encoding: z.enum(INLINE_ENCODINGS),
  data: z.string().max(MAX_MESSAGE_BYTES),
});
/** The bytes wait under stagingKey(set, seq, sha256): the key is derived, never taken from the message. Checked by hand in commonContent. */
const StagedContent = z.object({ kind: z.literal("staged") });
const Content = z.discriminatedUnion("kind", [InlineContent, StagedContent]);
/** A put's content may also be a slice of the message's pack (packed-content.ts). Checked by hand in commonContent. */
const PutContent = z.discriminatedUnion("kind", [InlineContent, StagedContent, PackedContent]);

/**
 * A put that carries only some blocks: the rest come from the target's
 * current object, whose sha256 must be `base`. The content holds the listed
 * blocks of the new file, in order; `size` and `sha256` are the whole new file's.
 */
const Delta = z.object({
  base: Sha256,
  blocks: z.array(z.number().int().min(0)).max(blockCount(MAX_DELTA_FILE_BYTES)),
  /**
   * The [offset, length] byte ranges the content holds instead of blocks
   * (blocks then empty), for files up to MAX_RANGED_FILE_BYTES. Optional:
   * older agents send blocks only.
   */
  ranges: z
    .array(z.tuple([z.number().int().min(0), z.number().int().min(1)]))
    .max(MAX_DELTA_RANGES)
    .optional(),
});

/** Checked by hand in commonRecord, but a put with a delta (which the refinement below is about) goes to the schema. */
const PutRecord = z
  .object({
    seq: Seq,
    at: RecordAt,
    op: z.literal("put"),
    path: SetPath,
    size: Size,
    mode: Mode,
    mtimeNs: MtimeNs,
    sha256: Sha256,
    content: PutContent,
    delta: Delta.optional(),
    /** The file had other hard links in the set when read: they share this id (optional; older agents send none). */
    linkGroup: LinkGroup.optional(),
  })
  .superRefine((put, ctx) => {
    if (!put.delta) return;
    if (put.delta.ranges) {
      if (put.delta.blocks.length > 0) ctx.addIssue({ code: "custom", path: ["delta", "blocks"], message: "a delta lists ranges or blocks, not both" });
      if (put.size > MAX_RANGED_FILE_BYTES) ctx.addIssue({ code: "custom", path: ["delta"], message: `a ranged delta is limited to files of ${MAX_RANGED_FILE_BYTES} bytes` });
      const problem = rangesProblem(put.size, put.delta.ranges);
      if (problem) ctx.addIssue({ code: "custom", path: ["delta", "ranges"], message: problem });
      return;
    }
    if (put.size > MAX_DELTA_FILE_BYTES) ctx.addIssue({ code: "custom", path: ["delta"], message: `a delta put is limited to files of ${MAX_DELTA_FILE_BYTES} bytes` });
    const count = blockCount(put.size);
    put.delta.blocks.forEach((index, i) => {
      const previous = put.delta?.blocks[i - 1];
      if (index >= count) ctx.addIssue({ code: "custom", path: ["delta", "blocks", i], message: `block ${index} is past the end of a ${put.size}-byte file` });
      if (previous !== undefined && index <= previous) ctx.addIssue({ code: "custom", path: ["delta", "blocks", i], message: "delta blocks must be listed in increasing order" });
    });
  });
/** Creates the directory if missing and sets its mode and mtime. Checked by hand in commonRecord. */
const MkdirRecord = z.object({ seq: Seq, at: RecordAt, op: z.literal("mkdir"), path: SetPath, mode: Mode, mtimeNs: MtimeNs });
const SymlinkRecord = z.object({
  seq: Seq,
  at: RecordAt,
  op: z.literal("symlink"),
  path: SetPath,
  target: z
    .string()
    .min(1)
    // A lone surrogate has no UTF-8 form: the target's object would hold another.
    .refine((t) => !t.includes("\0") && t.isWellFormed() && Buffer.byteLength(t) <= MAX_LINK_TARGET_BYTES, "symlink target has a NUL byte or a lone surrogate, or is too long"),
  mtimeNs: MtimeNs,
});
/** Removes a file, symlink or (empty) directory; the agent deletes a directory's entries before the directory. */
const DeleteRecord = z.object({ seq: Seq, at: RecordAt, op: z.literal("delete"), path: SetPath });
const RenameRecord = z.object({ seq: Seq, at: RecordAt, op: z.literal("rename"), from: SetPath, to: SetPath });
/**
 * Compares the target with the source's manifest as of this seq (the content:
 * gzip'ed JSON lines of ManifestEntry, with its size and sha256) and writes a
 * report under state/<set>/verify/<id>.json; orphans follow the policy.
 */
const VerifyRecord = z.object({
  seq: Seq,
  at: RecordAt,
  op: z.literal("verify"),
  id: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, "verify id must be 1-64 letters, digits or '-'"),
  deep: z.boolean(),
  orphans: z.enum(ORPHAN_POLICIES),
  size: Size,
  sha256: Sha256,
  content: Content,
});

/**
 * What the agent's index held at the marker's barrier (contract/digest.ts).
 * `list` is that index as a verification manifest (gzip'ed JSON lines of
 * ManifestEntry), read by the applier only when its snapshot's digest differs,
 * to name the paths; a volume's digest carries none.
 */
const MarkerDigest = SetDigestSchema.extend({ list: z.object({ size: Size, sha256: Sha256, content: Content }).optional() });

/**
 * A task marker journaled by the agent (DESIGN 3): when the applier reaches
 * it, the target holds what the source held at the barrier before it, and the
 * marker's action runs on that state.
 */
const TaskRecord = TaskFieldsSchema.extend({
  seq: Seq,
  at: RecordAt,
  op: z.literal("task"),
  id: TaskIdSchema,
  digest: MarkerDigest.optional(),
  /** Files that kept changing while the barrier read them (absent from older agents): the snapshot names them as possibly torn. */
  changingWhileRead: ChangingWhileReadSchema.optional(),
  /** Entries the set holds and does not replicate at the barrier (absent from older agents): the snapshot names itself incomplete. */
  notReplicated: NotReplicatedAtMarkerSchema.optional(),
});

/** Deletes snapshot manifests of the set beyond the newest `keep`, and the preserved content only they referred to. */
const PruneRecord = z.object({
  seq: Seq,
  at: RecordAt,
  op: z.literal("prune"),
  id: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, "prune id must be 1-64 letters, digits or '-'"),
  keep: z.number().int().min(0).max(1_000_000),
});

/** The report of a recovery drill the agent ran: the applier writes it to drills/<set>/<id>.json. */
const DrillRecord = z.object({ seq: Seq, at: RecordAt, op: z.literal("drill"), report: DrillReportSchema });

/** Largest volume a volume set may replicate (EBS's largest volume, 64 TiB). */
export const MAX_VOLUME_BYTES = 64 * 1024 ** 4;

const zeroHashes = new Map<number, string>();

/** sha256 of a block of `length` zero bytes. */
export function zeroBlockSha256(length: number): string {
  let hash = zeroHashes.get(length);
  if (hash === undefined) {
    hash = createHash("sha256").update(Buffer.alloc(length)).digest("hex");
    // Only whole blocks recur; a volume's short last block is computed each time.
    if (length === BLOCK_SIZE) zeroHashes.set(length, hash);
  }
  return hash;
}

/**
 * One block of a volume set written (DESIGN 3, volumes): the block's content
 * as the agent read it, BLOCK_SIZE long but the volume's last. A block of
 * zeros travels as `zero`, not as data. `volumeSize` is the volume's size
 * when the block was read: blocks past its end are dropped by the applier.
 */
const ZeroContent = z.object({ kind: z.literal("zero") });
const BlockRecord = z
  .object({
    seq: Seq,
    at: RecordAt,
    op: z.literal("block"),
    index: z.number().int().min(0),
    volumeSize: z.number().int().min(1).max(MAX_VOLUME_BYTES),
    sha256: Sha256,
    content: z.discriminatedUnion("kind", [InlineContent, StagedContent, ZeroContent]),
  })
  .superRefine((block, ctx) => {
    if (block.index >= blockCount(block.volumeSize)) {
      ctx.addIssue({ code: "custom", path: ["index"], message: `block ${block.index} is past the end of a ${block.volumeSize}-byte volume` });
    } else if (block.content.kind === "zero" && block.sha256 !== zeroBlockSha256(blockLength(block.volumeSize, block.index))) {
      ctx.addIssue({ code: "custom", path: ["sha256"], message: "a zero block's sha256 must be that of zeros" });
    }
  });

/** Holds the seq of a record the target refused for good (agent/poison.ts): applying it changes nothing. */
const SkipRecord = z.object({ seq: Seq, at: RecordAt, op: z.literal("skip") });

/** Restarts the seq chain after the set went out of sync: what follows is a mirror of the source. */
const ResyncRecord = z.object({ seq: Seq, at: RecordAt, op: z.literal("resync"), reason: z.string().max(1000) });

export const RecordSchema = z.discriminatedUnion("op", [
  PutRecord,
  MkdirRecord,
  SymlinkRecord,
  DeleteRecord,
  RenameRecord,
  ResyncRecord,
  VerifyRecord,
  TaskRecord,
  PruneRecord,
  BlockRecord,
  SkipRecord,
  DrillRecord,
]);

/** A journal's generation id (DESIGN 8): random, made with the journal; a new one restarts the set's seq chain. */
export const GenerationId = z.string().regex(GENERATION_ID_PATTERN, "a generation id is 1-16 letters or digits");

/** Checked by hand in commonMessage, the refinement too. */
export const MessageSchema = z
  .object({
    v: z.literal(WIRE_VERSION),
    set: SetName,
    /** The generation of the journal the records come from; absent from agents that predate generations. */
    gen: GenerationId.optional(),
    records: z.array(RecordSchema).min(1).max(MAX_MESSAGE_RECORDS),
    /** The staging object holding the packed records' bytes; absent when none is packed (and from older agents). */
    pack: MessagePack.optional(),
  })
  .superRefine((message, ctx) => {
    message.records.forEach((record, i) => {
      if (record.op === "put" && record.content.kind === "packed" && record.content.offset + record.content.length > packedBytes(message.pack)) {
        ctx.addIssue({ code: "custom", path: ["records", i, "content"], message: message.pack ? `packed content ends past the pack's ${packedBytes(message.pack)} bytes` : "packed content in a message without a pack" });
      }
      const previous = message.records[i - 1];
      if (previous && record.seq !== previous.seq + 1) {
        ctx.addIssue({
          code: "custom",
          path: ["records", i, "seq"],
          message: `records must carry contiguous seqs: ${previous.seq} is followed by ${record.seq}`,
        });
      }
    });
  });

/**
 * A marker sent straight to the queue (AWS console, `aws sqs send-message`),
 * with the set as MessageGroupId. It has no seq: the queue orders it, and the
 * applier runs it when it reaches it. Without an id, the SQS message id is used.
 */
export const MarkerMessageSchema = z.object({
  v: z.literal(WIRE_VERSION),
  set: SetName,
  task: TaskFieldsSchema.extend({ id: TaskIdSchema.optional() }).strict(),
});

export type WireRecord = z.infer<typeof RecordSchema>;
export type TaskRecord = z.infer<typeof TaskRecord>;
export type MarkerDigest = z.infer<typeof MarkerDigest>;
export type PruneRecord = z.infer<typeof PruneRecord>;
export type MarkerMessage = z.infer<typeof MarkerMessageSchema>;
export type PutRecord = z.infer<typeof PutRecord>;
export type Delta = z.infer<typeof Delta>;
export type VerifyRecord = z.infer<typeof VerifyRecord>;
export type BlockRecord = z.infer<typeof BlockRecord>;
export type DrillRecord = z.infer<typeof DrillRecord>;

export type WireMessage = z.infer<typeof MessageSchema>;
export type InlineContent = z.infer<typeof InlineContent>;
export { ManifestEntrySchema, type ManifestEntry };

/**
 * The path of the record a problem lies in, quoted, when the message names one: a refused field (a value this
 * applier cannot take) reads as the file it belongs to, not only as "records.4". Undefined for the message's own
 * fields, and for a refused path itself (its problem quotes it).
 */
export function recordPathOf(json: unknown, where: readonly PropertyKey[] | undefined): string | undefined {
  if (where?.[0] !== "records" || typeof where[1] !== "number" || where[2] === "path" || where[2] === "from") return undefined;
  const records = (json as { records?: unknown } | null)?.records;
  const record = Array.isArray(records) ? (records[where[1]] as Record<string, unknown> | null | undefined) : undefined;
  const path = typeof record === "object" && record !== null ? (record.path ?? record.from) : undefined;
  return typeof path === "string" ? quotedPath(path) : undefined;
}

/** A path named in an error: quoted (control characters escaped), its first 200 characters. */
export function quotedPath(path: string): string {
  return JSON.stringify(path.slice(0, 200));
}

function firstProblem(error: z.ZodError, json: unknown): string {
  const issue = error.issues[0];
  const where = issue?.path.length ? issue.path.join(".") : "message";
  const path = recordPathOf(json, issue?.path);
  const more = error.issues.length > 1 ? ` (and ${error.issues.length - 1} more problems)` : "";
  return `invalid message: ${where}${path ? ` (path ${path})` : ""}: ${issue?.message ?? "does not match the schema"}${more}`;
}

/** Parses and validates a message body: a run of records, or a marker sent straight to the queue. Throws BadMessageError saying what is wrong. */
export function parseMessage(body: string): WireMessage | MarkerMessage {
  if (body.length > MAX_MESSAGE_BYTES * 2) {
    throw new BadMessageError(`message body is ${body.length} characters, over the limit`);
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch (error) {
    throw new BadMessageError(`message body is not JSON: ${(error as Error).message}`);
  }
  const version = (json as { v?: unknown } | null)?.v;
  if (version !== WIRE_VERSION) {
    throw new BadMessageError(`unsupported wire version ${JSON.stringify(version)} (this applier reads v${WIRE_VERSION})`);
  }
  if (typeof json === "object" && json !== null && "task" in json) {
    const marker = MarkerMessageSchema.safeParse(json);
    if (!marker.success) throw new BadMessageError(firstProblem(marker.error, json));
    return marker.data;
  }
  const common = commonMessage(json);
  if (common) return common;
  const result = MessageSchema.safeParse(json);
  if (!result.success) throw new BadMessageError(firstProblem(result.error, json));
  return result.data;
}

/*
 * The common message (puts and folders: an initial mirror, a tree's everyday changes) checked by hand, rule for rule
 * as MessageSchema checks it, into the object MessageSchema would give (its keys, in its order). Zod's validation
 * cost ~15 us a record on a cold applier (a Lambda's first messages), several times the JSON parse. Anything else —
 * another op, a delta, a key the schema does not name, any value the schema refuses — gives undefined, and the schema
 * parses the message: what is refused, and the error that names why, are the schema's alone.
 * The bounds, patterns and allowed values are the constants the schemas are built from; the refinements are copied.
 * test/unit/wire-common-messages.test.ts holds the two to the same result, with boundary values and key sets it takes
 * from the schemas.
 */

/**
 * The keys the hand checks know, for each object of the common message (exported for the test that holds them to the
 * schemas' keys). A put's `delta` is left out on purpose: a delta put goes to the schema.
 */
export const HAND_CHECKED_KEYS = {
  message: ["v", "set", "gen", "records", "pack"],
  pack: ["size", "sha256", "encoding", "decodedSize"],
  put: ["seq", "at", "op", "path", "size", "mode", "mtimeNs", "sha256", "content", "linkGroup"],
  mkdir: ["seq", "at", "op", "path", "mode", "mtimeNs"],
  inline: ["kind", "encoding", "data"],
  packed: ["kind", "encoding", "offset", "length"],
  staged: ["kind"],
} as const;
const MESSAGE_KEYS = new Set<string>(HAND_CHECKED_KEYS.message);
const PACK_KEYS = new Set<string>(HAND_CHECKED_KEYS.pack);
const PUT_KEYS = new Set<string>(HAND_CHECKED_KEYS.put);
const MKDIR_KEYS = new Set<string>(HAND_CHECKED_KEYS.mkdir);
const INLINE_KEYS = new Set<string>(HAND_CHECKED_KEYS.inline);
const PACKED_KEYS = new Set<string>(HAND_CHECKED_KEYS.packed);
const STAGED_KEYS = new Set<string>(HAND_CHECKED_KEYS.staged);
const INLINE_ENCODING_SET = new Set<string>(INLINE_ENCODINGS);
const PACKED_ENCODING_SET = new Set<string>(PACKED_ENCODINGS);
const PACK_ENCODING_SET = new Set<string>(PACK_ENCODINGS);

type JsonObject = Record<string, unknown>;

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Whether every key of value is one of known. */
function onlyKeys(value: JsonObject, known: ReadonlySet<string>): boolean {
  for (const key in value) if (!known.has(key)) return false;
  return true;
}

function isInteger(value: unknown, min: number, max: number): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= min && value <= max;
}

function isText(value: unknown, pattern: RegExp): value is string {
  return typeof value === "string" && pattern.test(value);
}

function commonMessage(json: unknown): WireMessage | undefined {
  if (!isObject(json) || !onlyKeys(json, MESSAGE_KEYS)) return undefined;
  const { set, gen, records } = json;
  if (typeof set !== "string" || setNameProblem(set) !== undefined) return undefined;
  if (gen !== undefined && !isText(gen, GENERATION_ID_PATTERN)) return undefined;
  if (!Array.isArray(records) || records.length < 1 || records.length > MAX_MESSAGE_RECORDS) return undefined;
  let pack: MessagePack | undefined;
  if (json.pack !== undefined) {
    pack = commonPack(json.pack);
    if (!pack) return undefined;
  }
  const packBytes = packedBytes(pack);
  const out: WireRecord[] = [];
  for (const item of records) {
    const record = isObject(item) ? commonRecord(item) : undefined;
    if (!record) return undefined;
    const previous = out[out.length - 1];
    if (previous && record.seq !== previous.seq + 1) return undefined;
    if (record.op === "put" && record.content.kind === "packed" && record.content.offset + record.content.length > packBytes) return undefined;
    out.push(record);
  }
  return { v: WIRE_VERSION, set, ...(gen !== undefined ? { gen } : {}), records: out, ...(pack ? { pack } : {}) };
}

function commonPack(value: unknown): MessagePack | undefined {
  if (!isObject(value) || !onlyKeys(value, PACK_KEYS)) return undefined;
  const { size, sha256, encoding, decodedSize } = value;
  if (!isInteger(size, 1, MAX_PACK_BYTES) || !isText(sha256, SHA256_PATTERN)) return undefined;
  if (encoding !== undefined && !(typeof encoding === "string" && PACK_ENCODING_SET.has(encoding))) return undefined;
  if (decodedSize !== undefined && !isInteger(decodedSize, 1, MAX_PACK_BYTES)) return undefined;
  if ((encoding === undefined) !== (decodedSize === undefined)) return undefined;
  return { size, sha256, ...(encoding !== undefined ? { encoding: encoding as "zstd" | "gzip", decodedSize: decodedSize as number } : {}) };
}

function commonRecord(record: JsonObject): WireRecord | undefined {
  const { seq, at, op, path, mode, mtimeNs } = record;
  if (!isInteger(seq, MIN_SEQ, MAX_SEQ)) return undefined;
  if (at !== undefined && !isInteger(at, 0, MAX_RECORD_AT)) return undefined;
  if (typeof path !== "string" || setPathProblem(path) !== undefined) return undefined;
  if (!isInteger(mode, 0, MAX_MODE) || !isText(mtimeNs, MTIME_NS_PATTERN)) return undefined;
  const stamp = at !== undefined ? { seq, at } : { seq };
  if (op === "mkdir") return onlyKeys(record, MKDIR_KEYS) ? { ...stamp, op, path, mode, mtimeNs } : undefined;
  if (op !== "put" || !onlyKeys(record, PUT_KEYS)) return undefined;
  const { size, sha256, linkGroup } = record;
  if (!isInteger(size, 0, MAX_SIZE) || !isText(sha256, SHA256_PATTERN)) return undefined;
  if (linkGroup !== undefined && !isText(linkGroup, LINK_GROUP_PATTERN)) return undefined;
  const content = isObject(record.content) ? commonContent(record.content) : undefined;
  if (!content) return undefined;
  return { ...stamp, op, path, size, mode, mtimeNs, sha256, content, ...(linkGroup !== undefined ? { linkGroup } : {}) };
}

function commonContent(content: JsonObject): PutRecord["content"] | undefined {
  const { kind, encoding } = content;
  if (kind === "staged") return onlyKeys(content, STAGED_KEYS) ? { kind } : undefined;
  if (kind === "packed") {
    const { offset, length } = content;
    if (!onlyKeys(content, PACKED_KEYS) || typeof encoding !== "string" || !PACKED_ENCODING_SET.has(encoding)) return undefined;
    if (!isInteger(offset, 0, MAX_PACK_BYTES) || !isInteger(length, 0, MAX_PACK_BYTES)) return undefined;
    return { kind, encoding: encoding as PackedContent["encoding"], offset, length };
  }
  if (kind !== "inline" || !onlyKeys(content, INLINE_KEYS) || typeof encoding !== "string" || !INLINE_ENCODING_SET.has(encoding)) return undefined;
  const { data } = content;
  if (typeof data !== "string" || data.length > MAX_MESSAGE_BYTES) return undefined;
  return { kind, encoding: encoding as InlineContent["encoding"], data };
}

/** A marker message (no seq) rather than a run of records. */
export function isMarkerMessage(message: WireMessage | MarkerMessage): message is MarkerMessage {
  return "task" in message;
}

/**
 * JSON text of a message part, characters beyond U+FFFF written as \u escapes
 * (their surrogate pairs): SQS takes them raw, but the local emulator refuses
 * them in a message body, and JSON.parse reads both the same.
 */
export function wireJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u{10000}-\u{10FFFF}]/gu, (c) => `\\u${c.charCodeAt(0).toString(16)}\\u${c.charCodeAt(1).toString(16)}`);
}

export function serializeMessage(message: WireMessage): string {
  const { records, ...header } = message;
  return joinMessage(header, records.map(wireJson));
}

/** A message but its records. */
export type MessageHeader = Omit<WireMessage, "records">;

/**
 * The message serializeMessage writes, from its records' JSON text (wireJson
 * of each): the agent measures each record's text as it packs a message, and
 * joins them without writing them again.
 */
export function joinMessage(header: MessageHeader, recordsJson: readonly string[]): string {
  // The header's text ends in "[]}": the records go between the brackets.
  return `${wireJson({ ...header, records: [] }).slice(0, -2)}${recordsJson.join(",")}]}`;
}

/** First and last seq of a message. */
export function seqRange(message: WireMessage): { first: number; last: number } {
  const first = message.records[0]?.seq ?? 0;
  return { first, last: first + message.records.length - 1 };
}

/**
 * FIFO deduplication id of a message: the same run of records always gets the
 * same id. The generation is part of it: a new journal reuses seqs, and its
 * messages must not be taken for the old one's within the queue's window.
 */
export function deduplicationId(set: string, first: number, last: number, gen?: string): string {
  return gen === undefined ? `${set}:${first}-${last}` : `${set}:${gen}:${first}-${last}`;
}

/** How the agent compresses inline content; "none" sends it as it is. */
export { COMPRESSIONS, type Compression } from "./compression.ts";

/** Inline form of small content: compressed only when that saves space (never for random or already-compressed data), base64 either way. */
export function encodeInline(bytes: Uint8Array, compression: Compression = "zstd"): InlineContent {
  const packed = compressed(bytes, compression);
  if (!packed) return { kind: "inline", encoding: "base64", data: Buffer.from(bytes).toString("base64") };
  return { kind: "inline", encoding: packed.codec === "zstd" ? "zstd+base64" : "gzip+base64", data: packed.data.toString("base64") };
}

/** Bytes of inline content; throws BadMessageError when they do not decode. */
export function decodeInline(content: InlineContent): Buffer {
  const raw = Buffer.from(content.data, "base64");
  if (content.encoding === "base64") return raw;
  try {
    return decompressed(raw, content.encoding === "zstd+base64" ? "zstd" : "gzip", MAX_INLINE_DECODED_BYTES);
  } catch (error) {
    throw new BadMessageError(`inline content does not decompress (${content.encoding}): ${(error as Error).message}`);
  }
}
