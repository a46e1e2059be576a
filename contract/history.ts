// Point-in-time history of a set (DESIGN 8b): what the applier writes under
// history/<set>/ and what `tidemark restore --at` and `tidemark timeline`
// read. Like Litestream's snapshots plus WAL segments: checkpoints (a manifest
// of the live mirror at a point of the stream) and segments (the changes
// applied after it, one object per applied message, in apply order).

import { z } from "zod";
import { LinkGroup, Mode, MtimeNs, Sha256, Size } from "./manifest-entry.ts";
import { SnapshotEntrySchema, VolumeBlockEntrySchema } from "./tasks.ts";

/** Default protection window: every moment of the last 7 days restores. */
export const DEFAULT_POINT_IN_TIME_DAYS = 7;
export const DAY_MS = 86_400_000;

/** Top prefix of the history (PREFIX.history in layout.ts). */
export const HISTORY_PREFIX = "history/";

/** Prefix of a set's history. */
export function historyPrefix(set: string): string {
  return `${HISTORY_PREFIX}${set}/`;
}

/** Digits of a segment number in its key, so keys list in apply order. */
const SEGMENT_DIGITS = 12;

/** Prefix of a set's history segments. */
export function segmentsPrefix(set: string): string {
  return `${historyPrefix(set)}segments/`;
}

/** Key of history segment n of a set: gzip'ed JSON lines of HistoryEntry, in apply order. */
export function segmentKey(set: string, n: number): string {
  return `${segmentsPrefix(set)}${String(n).padStart(SEGMENT_DIGITS, "0")}.jsonl.gz`;
}

/** The segment number a key names, or undefined for any other key. */
export function segmentNumber(set: string, key: string): number | undefined {
  const match = /^(\d+)\.jsonl\.gz$/.exec(key.slice(segmentsPrefix(set).length));
  return match?.[1] === undefined ? undefined : Number(match[1]);
}

/** Prefix of a set's history checkpoints. */
export function checkpointsPrefix(set: string): string {
  return `${historyPrefix(set)}checkpoints/`;
}

/** Key of the summary of the checkpoint that covers segments before `segment`. */
export function checkpointSummaryKey(set: string, segment: number): string {
  return `${checkpointsPrefix(set)}${String(segment).padStart(SEGMENT_DIGITS, "0")}.json`;
}

/** Key of a checkpoint's manifest: gzip'ed JSON lines (SnapshotEntry for files, VolumeBlockEntry for volumes). */
export function checkpointManifestKey(set: string, segment: number): string {
  return `${checkpointsPrefix(set)}${String(segment).padStart(SEGMENT_DIGITS, "0")}.jsonl.gz`;
}

/** Milliseconds since the epoch. */
const At = z.number().int().min(0);

/**
 * One change as the applier applied it, at the time the agent journaled it
 * (clamped by the applier: never earlier than the entry before it, never
 * later than the applier's clock). Content is named by sha256: live, or
 * preserved under preserved/<set>/<sha256> before it was replaced, and on a
 * versioned bucket by the object version a put or rename wrote.
 */
export const HistoryEntrySchema = z.discriminatedUnion("op", [
  /**
   * versionId: on a versioned bucket, the object version the put wrote (the content stays readable by it after it is
   * replaced). linkGroup: the file's hard-link group, as the put carried it (absent in segments written before it was kept).
   */
  z.object({ op: z.literal("put"), seq: z.number().int(), at: At, path: z.string(), size: Size, mode: Mode, mtimeNs: MtimeNs, sha256: Sha256, versionId: z.string().optional(), linkGroup: LinkGroup.optional() }),
  z.object({ op: z.literal("mkdir"), seq: z.number().int(), at: At, path: z.string(), mode: Mode, mtimeNs: MtimeNs }),
  z.object({ op: z.literal("symlink"), seq: z.number().int(), at: At, path: z.string(), target: z.string(), mtimeNs: MtimeNs }),
  /** A file, symlink or folder removed: by the agent, or as an orphan by a verification. */
  z.object({ op: z.literal("delete"), seq: z.number().int(), at: At, path: z.string() }),
  /** versionId: on a versioned bucket, the version the copy wrote at `to`. */
  z.object({ op: z.literal("rename"), seq: z.number().int(), at: At, from: z.string(), to: z.string(), versionId: z.string().optional() }),
  /** A block of a volume set written; sha256 null for zeros. */
  z.object({ op: z.literal("block"), seq: z.number().int(), at: At, index: z.number().int().min(0), volumeSize: z.number().int().min(1), sha256: Sha256.nullable() }),
  /** A volume's blocks start again from zeros (a resync). */
  z.object({ op: z.literal("clear"), seq: z.number().int(), at: At }),
  /** A task marker reached: an application-consistent point. */
  z.object({ op: z.literal("marker"), seq: z.number().int(), at: At, id: z.string(), action: z.string(), label: z.string().optional() }),
]);
export type HistoryEntry = z.infer<typeof HistoryEntrySchema>;

/** A checkpoint: the set as it was after every segment before `segment` (and before any after it). */
export const CheckpointSummarySchema = z.object({
  set: z.string(),
  /** The first segment not in the checkpoint: a restore replays from here. */
  segment: z.number().int().min(0),
  /** The time of the last change the checkpoint holds (ms); a restore at or after it may start here. */
  at: At,
  /** When the applier wrote it (ms, the applier's clock). */
  writtenAt: At,
  kind: z.enum(["files", "volume"]),
  /** For a volume: its size in bytes. */
  volumeSize: z.number().int().min(0).optional(),
  entries: z.number().int().min(0),
  manifestSha256: Sha256,
  /** Entries of the live mirror left out because their object could not be read (why, per path): a restore names them as not restorable. */
  unreadable: z.array(z.object({ path: z.string(), reason: z.string() })).optional(),
});
export type CheckpointSummary = z.infer<typeof CheckpointSummarySchema>;

export { SnapshotEntrySchema as CheckpointEntrySchema, VolumeBlockEntrySchema as CheckpointBlockSchema };

/** The history's cursor, kept in the set's status (SetStatus.history). */
export const HistoryCursorSchema = z.object({
  /** The next segment number. */
  segment: z.number().int().min(0),
  /** Time of the last change recorded (ms): later entries are never stamped earlier. */
  at: At,
  /** Segment of the newest checkpoint, and when it was written (ms). */
  checkpointSegment: z.number().int().min(0),
  checkpointWrittenAt: At,
  /** When retention last ran (ms). */
  sweptAt: At.default(0),
  /** The protection window (days) the applier keeps, for `tidemark timeline`. */
  days: z.number().min(0).optional(),
});
export type HistoryCursor = z.infer<typeof HistoryCursorSchema>;
