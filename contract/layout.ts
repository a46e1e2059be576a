// Target bucket layout (DESIGN 5). These prefixes are a contract: the agent,
// the applier, the CDK policies and the operators' tools all rely on them.

import { z } from "zod";
import { HISTORY_PREFIX, HistoryCursorSchema } from "./history.ts";
import { LINK_IN_BODY_KEY, LINK_TARGET_KEY, linkTargetMetadata } from "./link-meta.ts";
import { MTIME_NS_PATTERN } from "./manifest-entry.ts";

export const PREFIX = {
  data: "data/",
  staging: "staging/",
  snapshots: "snapshots/",
  preserved: "preserved/",
  blocks: "blocks/",
  tasks: "tasks/",
  state: "state/",
  /** Objects found on the target that the source does not have, moved aside by a verification. */
  orphans: "orphans/",
  /** Reports of recovery drills (`tidemark drill`). */
  drills: "drills/",
  /** Point-in-time history: checkpoints and per-message change segments (contract/history.ts). */
  history: HISTORY_PREFIX,
} as const;

/** Prefix of a set's live mirror. */
export function dataPrefix(set: string): string {
  return `${PREFIX.data}${set}/`;
}

/** Key of a file or symlink in the live mirror. */
export function dataKey(set: string, path: string): string {
  return `${dataPrefix(set)}${path}`;
}

/** Key of the zero-byte object that stands for a directory (so empty folders survive). */
export function dirKey(set: string, path: string): string {
  return `${dataPrefix(set)}${path}/`;
}

/** Key of a payload too large to travel in a message; unique per record so the applier may delete it once applied. */
export function stagingKey(set: string, seq: number, sha256: string): string {
  return `${PREFIX.staging}${set}/${seq}.${sha256}`;
}

/** Key of the applier's checkpoint and status for a set. */
export function statusKey(set: string): string {
  return `${PREFIX.state}${set}/status.json`;
}

/** Key of the set's owner record (contract/signing.ts OwnerRecord): written by the applier on first use and by `tidemark adopt`, never by an agent. */
export function ownerKey(set: string): string {
  return `${PREFIX.state}${set}/owner.json`;
}

/** Key of the report of a verification (a `verify` record) of a set. */
export function verifyReportKey(set: string, id: string): string {
  return `${PREFIX.state}${set}/verify/${id}.json`;
}

/** Where an orphan of a set goes when the orphan policy is "move-aside". */
export function orphanKey(set: string, verifyId: string, targetKey: string): string {
  return `${PREFIX.orphans}${set}/${verifyId}/${targetKey.slice(dataPrefix(set).length)}`;
}

/** Key of the result of a task marker. */
export function taskResultKey(set: string, taskId: string): string {
  return `${PREFIX.tasks}${set}/${taskId}.json`;
}

/** Prefix of a set's snapshots: one folder per snapshot. */
export function snapshotsPrefix(set: string): string {
  return `${PREFIX.snapshots}${set}/`;
}

/** Key of a snapshot's summary (what `tidemark snapshots` lists). */
export function snapshotSummaryKey(set: string, snapshotId: string): string {
  return `${snapshotsPrefix(set)}${snapshotId}/snapshot.json`;
}

/** Key of a snapshot's manifest: gzip'ed JSON lines, one SnapshotEntry per entry of the set. */
export function snapshotManifestKey(set: string, snapshotId: string): string {
  return `${snapshotsPrefix(set)}${snapshotId}/manifest.jsonl.gz`;
}

/** Key of what a snapshot's verification proved: gzip'ed JSON of the content objects it checked, with the tag each had (the next verification trusts an object whose tag has not changed). */
export function snapshotProofKey(set: string, snapshotId: string): string {
  return `${snapshotsPrefix(set)}${snapshotId}/verified.json.gz`;
}

/** Prefix of a set's preserved content: every key under it is preservedKey(set, sha256). */
export function preservedPrefix(set: string): string {
  return `${PREFIX.preserved}${set}/`;
}

/** Key of content kept for snapshots after the live mirror overwrote or deleted it (DESIGN 4): once per content hash. */
export function preservedKey(set: string, sha256: string): string {
  return `${preservedPrefix(set)}${sha256}`;
}

/** Prefix of a volume set's block content objects. */
export function blockDataPrefix(set: string): string {
  return `${PREFIX.blocks}${set}/data/`;
}

/** Key of a volume set's block content: once per content hash (zero blocks are never stored). */
export function blockDataKey(set: string, sha256: string): string {
  return `${blockDataPrefix(set)}${sha256}`;
}

/** Blocks per page of a volume's block map: one page covers 2 GiB of the volume. */
export const BLOCK_MAP_PAGE_BLOCKS = 4096;

/** Prefix of a volume set's block map pages. */
export function blockMapPrefix(set: string): string {
  return `${PREFIX.blocks}${set}/map/`;
}

/** Key of one page of a volume set's live block map (block index -> sha256 of its content). */
export function blockMapKey(set: string, page: number): string {
  return `${blockMapPrefix(set)}${String(page).padStart(8, "0")}.json`;
}

/** Key of a volume set's state: its size, and the EBS snapshot the next one builds on. */
export function volumeStateKey(set: string): string {
  return `${PREFIX.blocks}${set}/volume.json`;
}

/** Key of the report of a `prune` record. */
export function pruneReportKey(set: string, id: string): string {
  return `${PREFIX.state}${set}/prune/${id}.json`;
}

/** Prefix of a set's drill reports. */
export function drillsPrefix(set: string): string {
  return `${PREFIX.drills}${set}/`;
}

/** Key of the report of a recovery drill of a set. */
export function drillReportKey(set: string, id: string): string {
  return `${drillsPrefix(set)}${id}.json`;
}

export const ORPHAN_POLICIES = ["report", "delete", "move-aside"] as const;
export type OrphanPolicy = (typeof ORPHAN_POLICIES)[number];

/** What a verification found: the target compared with the source's manifest at the verify record's seq. */
export const VerifyReportSchema = z.object({
  id: z.string(),
  set: z.string(),
  seq: z.number().int(),
  deep: z.boolean(),
  at: z.string(),
  /** Entries of the manifest compared. */
  checked: z.number().int(),
  /** In the manifest, not on the target. */
  missing: z.array(z.string()),
  /** On both, not the same; `blocks` lists the differing blocks when a deep check could tell. */
  different: z.array(z.object({ path: z.string(), reason: z.string(), blocks: z.array(z.number().int()).optional() })),
  /** On the target, not in the manifest. */
  extra: z.array(z.string()),
  orphans: z.enum(ORPHAN_POLICIES),
});
export type VerifyReport = z.infer<typeof VerifyReportSchema>;

/** Metadata stored on every live-mirror object (S3 user metadata, lower-case keys). */
export const META = {
  kind: "tidemark-kind",
  mode: "tidemark-mode",
  mtimeNs: "tidemark-mtime-ns",
  sha256: "tidemark-sha256",
  linkTarget: LINK_TARGET_KEY,
  /** A symlink whose target is too long for the metadata: its body holds it (link-meta.ts). */
  linkInBody: LINK_IN_BODY_KEY,
  /** Files that were hard links of one another on the source share this id. */
  linkGroup: "tidemark-link-group",
  /** Snapshots of the set taken before this object was written: content older than the newest snapshot is preserved before it is replaced. */
  gen: "tidemark-gen",
} as const;

export type EntryKind = "file" | "dir" | "symlink";

export interface EntryMeta {
  kind: EntryKind;
  /** Permission bits (0o7777 mask). */
  mode: number;
  /** Modification time in nanoseconds since the epoch, as a decimal string (exact, unlike a float). */
  mtimeNs: string;
  /** sha256 of the content (files) or of the link target (symlinks); absent for directories. */
  sha256?: string;
  /** Symlink target, for symlinks, when the metadata holds it. */
  linkTarget?: string;
  /** A symlink whose target is its object's body (read with lambdas/link-targets.ts). */
  linkInBody?: boolean;
  /** The set's snapshot generation when the object was written. */
  gen?: number;
  /** Hard-link group of a file (see PutRecord.linkGroup). */
  linkGroup?: string;
}

export function encodeMeta(meta: EntryMeta): Record<string, string> {
  const out: Record<string, string> = {
    [META.kind]: meta.kind,
    [META.mode]: meta.mode.toString(8),
    [META.mtimeNs]: meta.mtimeNs,
  };
  if (meta.sha256 !== undefined) out[META.sha256] = meta.sha256;
  if (meta.linkTarget !== undefined) Object.assign(out, linkTargetMetadata(meta.linkTarget));
  else if (meta.linkInBody) out[META.linkInBody] = "1";
  if (meta.gen !== undefined && meta.gen > 0) out[META.gen] = String(meta.gen);
  if (meta.linkGroup !== undefined) out[META.linkGroup] = meta.linkGroup;
  return out;
}

/** The entry metadata of a live-mirror object, or undefined when the object carries none (not written by tidemark). */
export function decodeMeta(raw: Record<string, string> | undefined): EntryMeta | undefined {
  const kind = raw?.[META.kind];
  if (!raw || (kind !== "file" && kind !== "dir" && kind !== "symlink")) return undefined;
  const mode = Number.parseInt(raw[META.mode] ?? "", 8);
  const mtimeNs = raw[META.mtimeNs] ?? "";
  if (!Number.isInteger(mode) || !MTIME_NS_PATTERN.test(mtimeNs)) return undefined;
  const meta: EntryMeta = { kind, mode, mtimeNs };
  const sha256 = raw[META.sha256];
  if (sha256 !== undefined) meta.sha256 = sha256;
  const link = raw[META.linkTarget];
  if (link !== undefined) meta.linkTarget = decodeURIComponent(link);
  else if (raw[META.linkInBody] === "1") meta.linkInBody = true;
  const gen = Number(raw[META.gen] ?? "0");
  if (Number.isInteger(gen) && gen > 0) meta.gen = gen;
  const linkGroup = raw[META.linkGroup];
  if (linkGroup !== undefined && /^[0-9a-f]{16}$/.test(linkGroup)) meta.linkGroup = linkGroup;
  return meta;
}

/** A set's chain moved to a new journal generation (lost or restored journal, rebuilt host). */
export const GenerationChangeSchema = z.object({
  id: z.string(),
  /** When the target began it. */
  since: z.string(),
  /** The seq its chain starts at on the target. */
  seq: z.number().int().min(0),
  reason: z.string(),
});
export type GenerationChange = z.infer<typeof GenerationChangeSchema>;

const RefusalSchema = z.object({ at: z.string(), messageId: z.string(), reason: z.string(), sender: z.string().optional(), keyId: z.string().optional() });

export const SetStatusSchema = z.object({
  set: z.string(),
  /** Last seq applied; 0 before anything was. */
  lastSeq: z.number().int().min(0),
  state: z.enum(["in-sync", "out-of-sync"]),
  /** Why the set is out of sync (a seq gap, a rejected message). */
  reason: z.string().optional(),
  /** The last message the applier refused, with why; kept after the set recovers, for the operator. */
  lastRejected: z
    /** seq, generation: the message's last seq record and the set's generation, when it carried records of it (a resync after supersedes them). */
    .object({ at: z.string(), messageId: z.string(), error: z.string(), seq: z.number().int().optional(), generation: z.string().optional() })
    .optional(),
  /** The last resync the checkpoint passed (its seq, the set's generation, the applier's clock): the mirror after it supersedes the records of a message rejected with a lower seq. */
  resynced: z.object({ seq: z.number().int(), generation: z.string().optional(), at: z.string() }).optional(),
  /** The set's newest snapshot and how its checks came out, so `tidemark status` names a recovery point that cannot be relied on. */
  lastSnapshot: z
    .object({
      id: z.string(),
      takenAt: z.string(),
      digest: z.enum(["matched", "mismatch", "unverified"]),
      verification: z.enum(["pending", "verified", "failed", "unverified"]),
      /** Files that kept changing while its marker's barrier read them (held as read, possibly torn): its task failed. */
      changingWhileRead: z.number().int().min(1).optional(),
      /** Entries the source held at its marker that the agent does not replicate: the snapshot lacks them, its task failed. */
      notReplicated: z.number().int().min(1).optional(),
    })
    .optional(),
  /**
   * A marker sent straight to the queue (no seq) whose action the applier is running now: it holds the set's stream
   * (the set's messages wait behind it) until the action ends. Cleared when it ends; left by an applier that died in it.
   */
  queueMarker: z
    .object({ id: z.string(), since: z.string(), action: z.string(), label: z.string().optional(), timeoutSeconds: z.number().int().min(0), sender: z.string().optional() })
    .optional(),
  /** Messages refused because they were not signed by the set's owner (ownership.ts): nothing of them was applied. */
  refused: z
    .object({
      count: z.number().int().min(1),
      last: RefusalSchema,
      /**
       * The same refusals per sending key id ("unsigned" for none; "others" folds the keys beyond the first 16 and
       * what a status written before byKey counted), so an adoption answers only its key's (lambdas/applier/refusals.ts).
       */
      byKey: z.record(z.string(), z.object({ count: z.number().int().min(1), last: RefusalSchema })).optional(),
    })
    .optional(),
  /**
   * A second writer on the set's journal (lambdas/applier/duplicates.ts): a message repeated seqs the set had applied
   * with other changes (a copy of the source host, its key and journal included, sending too). `applied` and
   * `received` say what each held at `seq`. Nothing of the set is applied while it is named; `tidemark adopt` ends it.
   */
  twoWriters: z
    .object({ at: z.string(), messageId: z.string(), seq: z.number().int(), generation: z.string().optional(), applied: z.string(), received: z.string(), sender: z.string().optional() })
    .optional(),
  /**
   * The last repeated message whose seqs could not be compared with what was applied at them (their history is past
   * retention, unreadable, or holds no change at them): dropped as a redelivery, like before the check. A note, not a problem.
   */
  duplicateUnchecked: z.object({ at: z.string(), messageId: z.string(), first: z.number().int(), last: z.number().int(), reason: z.string() }).optional(),
  appliedRecords: z.number().int().min(0),
  appliedBytes: z.number().int().min(0),
  /** Snapshots ever taken of the set: live objects written before the newest one are preserved before they are replaced. */
  snapshotGen: z.number().int().min(0).default(0),
  /** Snapshots the set keeps (after pruning); none kept means nothing needs preserving. */
  snapshotsRetained: z.number().int().min(0).default(0),
  /** The journal generation the set's seq chain belongs to (DESIGN 8); absent until an agent sends one. */
  generation: z.string().optional(),
  /**
   * A generation whose records (from `seq`) arrived without the resync that begins it (refused as not the owner's
   * before an adoption, or lost): the set is held out of sync for it, and its agent must resync rather than wait for
   * that resync.
   */
  heldGeneration: z.object({ id: z.string(), seq: z.number().int().min(0) }).optional(),
  /** Every generation the set's chain has had, oldest first: when it began, at which seq, and why. */
  generations: z.array(GenerationChangeSchema).optional(),
  /** Digests of the generations dropped from `generations` (contract/forgotten-generations.ts): refused for good, never taken for new. */
  forgottenGenerations: z.array(z.string()).optional(),
  /** Where the set's point-in-time history stands; absent until the applier first recorded it. */
  history: HistoryCursorSchema.optional(),
  /**
   * Entries the newest history checkpoint left out because their object could not be read (`count`, the first few
   * named with why): restoring a moment from that checkpoint names them as not restorable. Absent when it read all.
   */
  checkpointUnreadable: z
    .object({ at: z.string(), segment: z.number().int().min(0), count: z.number().int().min(1), entries: z.array(z.object({ path: z.string(), reason: z.string() })) })
    .optional(),
  /** The first history segment holding folder changes the applier has not written to the folder objects yet; absent when there are none. */
  folderWritesFrom: z.number().int().min(0).optional(),
  /**
   * History segments (first..last, `unreadable` of them) the applier could not read when it replayed the folder writes
   * left for later (retention removed them, or they are damaged): the folder modes and mtimes they held may be missing
   * from the live mirror. Kept until a resync (a full mirror writes every folder again).
   */
  folderWritesLost: z
    .object({ at: z.string(), first: z.number().int().min(0), last: z.number().int().min(0), unreadable: z.number().int().min(1), error: z.string() })
    .optional(),
  /**
   * When the applier last moved lastSeq (its clock): what it applied, where updatedAt also moves for refusals and
   * rejections. Absent until a message was applied by an applier that records it.
   */
  appliedAt: z.string().optional(),
  /** What the applier that wrote the status accepts beyond wire v1 (contract/applier-accepts.ts); absent from older appliers. */
  accepts: z.array(z.string().max(64)).max(64).optional(),
  updatedAt: z.string(),
});
export type SetStatus = z.infer<typeof SetStatusSchema>;

/** blocks/<set>/volume.json: what the applier knows of a volume set beyond its block map. */
export const VolumeStateSchema = z.object({
  /** Bytes of the volume, as the agent last saw it. */
  size: z.number().int().min(0),
  /** The newest completed EBS snapshot of the volume: the parent of the next one. */
  ebs: z
    .object({
      snapshotId: z.string(),
      /** The tidemark snapshot whose blocks it holds: the next EBS snapshot uploads what differs from it. */
      manifestSnapshotId: z.string(),
      volumeSizeGiB: z.number().int().min(1),
      taskId: z.string(),
      completedAt: z.string(),
    })
    .optional(),
  /** Block contents replaced since the last sweep of unreferenced content. */
  replaced: z.number().int().min(0).default(0),
});
export type VolumeState = z.infer<typeof VolumeStateSchema>;

export function initialStatus(set: string): SetStatus {
  return { set, lastSeq: 0, state: "in-sync", appliedRecords: 0, appliedBytes: 0, snapshotGen: 0, snapshotsRetained: 0, updatedAt: new Date(0).toISOString() };
}
