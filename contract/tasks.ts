// Task markers (DESIGN 3): what a marker asks for, the result the applier
// writes for it, and the snapshot it may leave. The agent, the applier and
// the CLI's `tasks` / `snapshots` / `restore` read these shapes from here.

import { randomBytes } from "node:crypto";
import { z } from "zod";
import { ManifestEntrySchema } from "./manifest-entry.ts";
import { SetDigestSchema } from "./digest.ts";

/** What the applier does at a marker. `ebs-snapshot` is for volume sets. */
export const TASK_ACTIONS = ["snapshot", "invoke", "event", "backup", "ebs-snapshot"] as const;
export type TaskAction = (typeof TASK_ACTIONS)[number];

/** How long the applier holds later changes for an action, unless the marker says otherwise. */
export const DEFAULT_TASK_TIMEOUT_SECONDS = 300;
/** Longest hold a marker may ask for: a Lambda invocation's limit. */
export const MAX_TASK_TIMEOUT_SECONDS = 900;

export const TaskIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/, "a task id is 1-80 letters, digits, '.', '_' or '-', starting with a letter or digit");

/** The fields of a marker, wherever it was inserted (agent journal, console, script). */
export const TaskFieldsSchema = z.object({
  action: z.enum(TASK_ACTIONS).default("snapshot"),
  label: z.string().max(256).optional(),
  /** Seconds the applier holds later changes while the action runs; 0 = do not hold. */
  timeoutSeconds: z.number().int().min(0).max(MAX_TASK_TIMEOUT_SECONDS).default(DEFAULT_TASK_TIMEOUT_SECONDS),
  /** `invoke`: the function's name or ARN (it must be on the target's allow-list). */
  function: z.string().min(1).max(256).optional(),
  /** `invoke`: a JSON object merged into the payload under "input". */
  input: z.record(z.string(), z.unknown()).optional(),
  /** `invoke`, `event`, `backup`: take a snapshot first; its id goes into the action's context. */
  snapshot: z.boolean().optional(),
  /** `backup`: the resource to back up. @default the target bucket */
  resourceArn: z.string().min(1).max(2048).optional(),
  /** When the marker was inserted (ISO 8601), as the inserter saw it. */
  insertedAt: z.string().max(64).optional(),
});
export type TaskFields = z.infer<typeof TaskFieldsSchema>;

export const TASK_STATUSES = ["running", "succeeded", "failed", "skipped", "timed-out"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

/** Written to tasks/<set>/<task id>.json: "running" while the action runs, then its outcome. */
export const TaskResultSchema = z.object({
  id: z.string(),
  set: z.string(),
  /** The marker's seq in the set's stream; null for a marker sent straight to the queue. */
  seq: z.number().int().nullable(),
  action: z.enum(TASK_ACTIONS),
  label: z.string().optional(),
  status: z.enum(TASK_STATUSES),
  timeoutSeconds: z.number().int(),
  insertedAt: z.string().optional(),
  /** When the applier reached the marker. */
  reachedAt: z.string(),
  finishedAt: z.string().optional(),
  /** Times the applier started the action (a Lambda that died mid-action runs it again once). */
  attempts: z.number().int().min(1),
  /** What the action produced: snapshotId, backupJobId, eventId, the invoked function's response. */
  outputs: z.record(z.string(), z.unknown()),
  error: z.string().optional(),
  /** The attempt that last saved progress (a resumable action, e.g. an EBS snapshot's upload): attempts before it do not count as failures. */
  progressAttempt: z.number().int().min(1).optional(),
  /** The journal generation of the marker's seq (task-owner.ts: with set and seq, which marker this is the result of); absent for a marker sent straight to the queue and in older results. */
  generation: z.string().optional(),
  /** The id the marker was sent with, when another marker's result held it and this one ran under `id` instead (task-owner.ts). */
  requestedId: z.string().optional(),
});
export type TaskResult = z.infer<typeof TaskResultSchema>;

/** A task that will not change any more. */
export function isFinished(result: TaskResult): boolean {
  return result.status !== "running";
}

/** A new task id: sortable by time, unique enough to never collide on one host. */
export function newTaskId(now = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  return `${stamp}-${randomBytes(3).toString("hex")}`;
}

/** The snapshot a `snapshot` marker takes has an id derived from the task's, so a retried action writes the same snapshot. */
export function snapshotIdFor(taskId: string): string {
  return `snap-${taskId}`;
}

/** Most paths a snapshot's summary names (of a digest's differences, of a verification's failures); the counts say how many there were. */
export const MAX_NAMED_PATHS = 100;

const NamedPath = z.object({ path: z.string(), problem: z.string() });

/** Most bytes of names a marker carries of the files that kept changing while its barrier read them: its message stays small. */
export const MAX_CHANGING_WHILE_READ_BYTES = 16 * 1024;

/**
 * Files that kept changing while a marker's barrier read them, journaled as read: possibly torn copies, no state the
 * file was ever in. The first names (at most MAX_NAMED_PATHS, MAX_CHANGING_WHILE_READ_BYTES) and how many there were.
 */
export const ChangingWhileReadSchema = z.object({ paths: z.array(z.string()).max(MAX_NAMED_PATHS), count: z.number().int().min(1) });
export type ChangingWhileRead = z.infer<typeof ChangingWhileReadSchema>;

/** The bounded form of a barrier's list of files that kept changing (sorted by the caller); undefined for none. */
export function boundChangingWhileRead(paths: readonly string[]): ChangingWhileRead | undefined {
  if (paths.length === 0) return undefined;
  const named: string[] = [];
  let bytes = 0;
  for (const path of paths.slice(0, MAX_NAMED_PATHS)) {
    bytes += Buffer.byteLength(path);
    if (named.length > 0 && bytes > MAX_CHANGING_WHILE_READ_BYTES) break;
    named.push(path);
  }
  return { paths: named, count: paths.length };
}

/**
 * Entries the source held at a marker's barrier that the agent does not replicate (names the target cannot carry,
 * changes it refused for good: `tidemark status` names them on the source): the snapshot lacks them. The first names
 * (at most MAX_NAMED_PATHS, MAX_CHANGING_WHILE_READ_BYTES of names), each with why, and how many there were.
 */
export const NotReplicatedAtMarkerSchema = z.object({ paths: z.array(NamedPath).max(MAX_NAMED_PATHS), count: z.number().int().min(1) });
export type NotReplicatedAtMarker = z.infer<typeof NotReplicatedAtMarkerSchema>;

/** The bounded form of the entries a marker's set does not replicate (sorted by the caller); undefined for none. */
export function boundNotReplicated(entries: readonly { path: string; problem: string }[]): NotReplicatedAtMarker | undefined {
  if (entries.length === 0) return undefined;
  const named: { path: string; problem: string }[] = [];
  let bytes = 0;
  for (const { path, problem } of entries.slice(0, MAX_NAMED_PATHS)) {
    bytes += Buffer.byteLength(path) + Buffer.byteLength(problem);
    if (named.length > 0 && bytes > MAX_CHANGING_WHILE_READ_BYTES) break;
    named.push({ path, problem });
  }
  return { paths: named, count: entries.length };
}

/**
 * How a snapshot compares with the digest its marker carried (DESIGN 8b):
 * `matched`, `mismatch` (the differing paths named), or `unverified` when the
 * marker carried none (sent straight to the queue: no barrier scan saw the source).
 */
export const SnapshotDigestCheckSchema = z.object({
  status: z.enum(["matched", "mismatch", "unverified"]),
  reason: z.string().optional(),
  /** The marker's digest: what the source held at the barrier. */
  source: SetDigestSchema.optional(),
  /** The same digest over the snapshot's manifest. */
  target: SetDigestSchema,
  differences: z.array(NamedPath).optional(),
  differenceCount: z.number().int().min(0).optional(),
});
export type SnapshotDigestCheck = z.infer<typeof SnapshotDigestCheckSchema>;

/**
 * The check of a snapshot's content right after it was taken: every object
 * it names exists and has its SHA-256. `pending` while it goes on (across
 * invocations), then `verified` or `failed` (the paths named); `unverified`
 * when it could not run.
 */
export const SnapshotVerificationSchema = z.object({
  status: z.enum(["pending", "verified", "failed", "unverified"]),
  reason: z.string().optional(),
  /** When it finished. */
  at: z.string().optional(),
  /** Content objects checked so far, and how: by the checksum the store keeps, by reading them, or unchanged since the snapshot named in trustedFrom was verified. */
  objects: z.number().int().min(0),
  byChecksum: z.number().int().min(0),
  read: z.number().int().min(0),
  trusted: z.number().int().min(0),
  trustedFrom: z.string().optional(),
  failures: z.array(NamedPath.extend({ key: z.string() })),
  failureCount: z.number().int().min(0),
  /** While pending: the next item to check. */
  next: z.number().int().min(0).optional(),
  /** sha256 of what it proved (snapshotProofKey), checked before the next verification trusts it. */
  proofSha256: z.string().optional(),
});
export type SnapshotVerification = z.infer<typeof SnapshotVerificationSchema>;

/** snapshots/<set>/<id>/snapshot.json: what `tidemark snapshots` lists. */
export const SnapshotSummarySchema = z.object({
  id: z.string(),
  set: z.string(),
  taskId: z.string(),
  label: z.string().optional(),
  seq: z.number().int().nullable(),
  takenAt: z.string(),
  files: z.number().int(),
  dirs: z.number().int(),
  symlinks: z.number().int(),
  bytes: z.number().int(),
  /** Entries name object versions (a versioned bucket) instead of relying on preserved/ content. */
  versioned: z.boolean(),
  /** sha256 of the manifest object, checked before a restore trusts it. */
  manifestSha256: z.string(),
  /** A volume set's snapshot: its manifest lists blocks (VolumeBlockEntry), not files. */
  volume: z
    .object({
      /** Bytes of the volume. */
      size: z.number().int().min(0),
      /** Blocks holding data (zero blocks are not listed). */
      blocks: z.number().int().min(0),
      /** The EBS snapshot an `ebs-snapshot` marker cut from this state. */
      ebsSnapshotId: z.string().optional(),
    })
    .optional(),
  /** The marker's digest checked against the manifest (absent on snapshots taken before digests existed). */
  digest: SnapshotDigestCheckSchema.optional(),
  /** The content check right after the snapshot was taken. */
  verification: SnapshotVerificationSchema.optional(),
  /**
   * Entries of the live mirror left out because their object could not be read as its metadata says (a symlink
   * whose body was altered), named: the snapshot holds the rest, and its task fails.
   */
  unreadable: z.array(NamedPath).optional(),
  unreadableCount: z.number().int().min(0).optional(),
  /** Files that kept changing while the marker's barrier read them (the marker's list): held as read, possibly torn; its task fails. */
  changingWhileRead: ChangingWhileReadSchema.optional(),
  /**
   * Entries the source held at the marker that the agent does not replicate (the marker's list, names the target
   * cannot hold left out of `paths` and counted): the snapshot lacks them, its restore names them as not restored,
   * and its task fails.
   */
  notReplicated: NotReplicatedAtMarkerSchema.optional(),
});
export type SnapshotSummary = z.infer<typeof SnapshotSummarySchema>;

/**
 * How many entries a snapshot lacks (0: it is complete): those of the live mirror it could not read, and those the
 * source held at its marker that were never replicated. Its restore names them as not restored.
 */
export function leftOutCount(summary: SnapshotSummary): number {
  const unreadable = Math.max(summary.unreadableCount ?? 0, summary.unreadable?.length ?? 0);
  const notReplicated = summary.notReplicated ? Math.max(summary.notReplicated.count, summary.notReplicated.paths.length) : 0;
  return unreadable + notReplicated;
}

/**
 * One line of a snapshot manifest: a verification manifest's entry, plus the
 * object version on a versioned bucket, and the object's content tag (the
 * next snapshot reuses an entry whose object has not been written since).
 */
export const SnapshotEntrySchema = ManifestEntrySchema.extend({ versionId: z.string().optional(), etag: z.string().optional() });
export type SnapshotEntry = z.infer<typeof SnapshotEntrySchema>;

/** One line of a volume snapshot's manifest: a block holding data (blocks not listed are zeros). */
export const VolumeBlockEntrySchema = z.object({
  index: z.number().int().min(0),
  /** sha256 (hex) of the block's bytes: also where they live, blocks/<set>/data/<sha256>. */
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  size: z.number().int().min(1),
});
export type VolumeBlockEntry = z.infer<typeof VolumeBlockEntrySchema>;

/** What a `prune` record did, at state/<set>/prune/<id>.json. */
export const PruneReportSchema = z.object({
  id: z.string(),
  set: z.string(),
  keep: z.number().int(),
  at: z.string(),
  kept: z.array(z.string()),
  deleted: z.array(z.string()),
  /** Snapshots beyond `keep` the target kept anyway: taken inside its protection window (tidemark:pointInTimeDays). */
  protected: z.array(z.string()).optional(),
  /** The target's protection window in days; content it needs is deleted only by the target's own retention. */
  windowDays: z.number().optional(),
  /** Preserved content objects deleted because no kept snapshot refers to them. */
  contentDeleted: z.number().int(),
  contentBytesDeleted: z.number().int(),
});
export type PruneReport = z.infer<typeof PruneReportSchema>;
