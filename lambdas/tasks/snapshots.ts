// Snapshots (DESIGN 4): a `snapshot` marker writes a manifest of the live
// mirror as it is at the marker. On a versioned bucket the manifest names
// object versions. Without versioning, the applier copies live content that
// a kept snapshot still needs to preserved/<set>/<sha256> (once per content
// hash) before it overwrites or deletes it, so a snapshot restores
// byte-for-byte after the mirror moved on. Retention deletes manifests and
// the preserved content only they referred to.

import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { mapConcurrent } from "../../contract/async.ts";
import {
  dataPrefix,
  decodeMeta,
  META,
  preservedPrefix,
  preservedKey,
  snapshotManifestKey,
  snapshotProofKey,
  snapshotsPrefix,
  snapshotSummaryKey,
  type EntryMeta,
  type SetStatus,
} from "../../contract/layout.ts";
import {
  leftOutCount,
  MAX_NAMED_PATHS,
  SnapshotEntrySchema,
  SnapshotSummarySchema,
  VolumeBlockEntrySchema,
  type SnapshotEntry,
  type SnapshotSummary,
  type VolumeBlockEntry,
} from "../../contract/tasks.ts";
import { symlinkTarget } from "../link-targets.ts";
import type { ObjectHead, ObjectInfo, TargetStore } from "../store/store.ts";
import { VolumeMap } from "../volumes/block-map.ts";

/** Object heads at once while taking a snapshot. */
const HEAD_CONCURRENCY = 64;

export class SnapshotError extends Error {
  override name = "SnapshotError";
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

export interface SnapshotRequest {
  readonly id: string;
  readonly taskId: string;
  readonly label?: string;
  readonly seq: number | null;
}

/** What a snapshot may take over from the set's previous one. */
interface PreviousSnapshot {
  /** Objects last written before this are unchanged since that snapshot when their tag and size match. */
  readonly writtenBefore: number;
  readonly entries: ReadonlyMap<string, SnapshotEntry>;
}

/**
 * S3 keeps LastModified to the second, truncated: an object stamped before the
 * second the previous snapshot was taken in was written before it. One more
 * second covers the applier's clock running ahead of S3's.
 */
function writtenBefore(takenAt: string): number {
  return Math.floor(Date.parse(takenAt) / 1000) * 1000 - 1000;
}

async function previousSnapshot(store: TargetStore, set: string): Promise<PreviousSnapshot | undefined> {
  const latest = (await listSnapshots(store, set)).at(-1);
  if (!latest) return undefined;
  const entries = await readManifest(store, latest).catch(() => undefined);
  if (!entries) return undefined;
  return { writtenBefore: writtenBefore(latest.takenAt), entries: new Map(entries.map((e) => [e.path, e])) };
}

/** Times a symlink whose target could not be read (replaced between its HEAD and its body's GET) is read again. */
const LINK_READS = 3;

/** An entry of the live mirror whose object is there but cannot be read as what its metadata says. */
export class UnreadableEntryError extends SnapshotError {
  override name = "UnreadableEntryError";
  readonly path: string;
  constructor(path: string, message: string) {
    super(message);
    this.path = path;
  }
}

/** Called for an entry left out as unreadable (a history checkpoint goes on without it; a snapshot fails instead). */
export type OnUnreadable = (path: string, error: UnreadableEntryError) => void;

type Tags = { versionId?: string; etag?: string };

/** The entry of an object that is not a symlink (a folder, or a file tidemark wrote), from its HEAD. */
function plainEntry(path: string, head: ObjectHead, meta: EntryMeta, tags: Tags): SnapshotEntry | undefined {
  if (meta.kind === "dir") return { path, kind: "dir", size: 0, mode: meta.mode, mtimeNs: meta.mtimeNs, ...tags };
  if (!meta.sha256) return undefined;
  const linkGroup = meta.linkGroup ? { linkGroup: meta.linkGroup } : {};
  return { path, kind: "file", size: head.size, mode: meta.mode, mtimeNs: meta.mtimeNs, sha256: meta.sha256, ...linkGroup, ...tags };
}

/**
 * A symlink whose target is kept in its body, read again from a fresh HEAD: on an unversioned bucket the object may
 * have been replaced between the HEAD and the GET. One that became a file or folder (or vanished) meanwhile is taken
 * as it is now. Never recorded without its target: one that stays unreadable throws UnreadableEntryError naming it.
 */
async function linkEntryReadAgain(store: TargetStore, key: string, path: string, listedEtag: string | undefined): Promise<SnapshotEntry | undefined> {
  for (let attempt = 0; attempt < LINK_READS; attempt++) {
    const head = await store.head(key);
    const meta = decodeMeta(head?.meta);
    if (!head || !meta) return undefined;
    const etag = head.etag ?? listedEtag;
    const tags = { ...(head.versionId ? { versionId: head.versionId } : {}), ...(etag ? { etag } : {}) };
    if (meta.kind !== "symlink") return plainEntry(path, head, meta, tags);
    const link = await symlinkTarget(store, key, meta, head.versionId);
    if (link !== undefined) return { path, kind: "symlink", size: 0, mode: meta.mode, mtimeNs: meta.mtimeNs, link, ...tags };
  }
  throw new UnreadableEntryError(path, `${path}: its symlink target (kept in the object's body) could not be read: the body does not match its sha256 or the object changed on every read`);
}

/**
 * Entries of the live mirror of a set, read from the objects' metadata; objects
 * tidemark did not write are left out. An object not written since the previous
 * snapshot (same tag, same size, older) keeps that snapshot's entry without a
 * HEAD: a snapshot costs a listing plus a request per changed object.
 */
async function liveEntries(
  store: TargetStore,
  set: string,
  signal: AbortSignal | undefined,
  previous: PreviousSnapshot | undefined,
  onUnreadable?: OnUnreadable,
): Promise<SnapshotEntry[]> {
  const prefix = dataPrefix(set);
  const objects: ObjectInfo[] = [];
  for await (const object of store.list(prefix)) objects.push(object);
  signal?.throwIfAborted();
  const entries = await mapConcurrent(objects, HEAD_CONCURRENCY, async (object): Promise<SnapshotEntry | undefined> => {
    const path = object.key.slice(prefix.length).replace(/\/$/, "");
    const before = previous?.entries.get(path);
    if (
      before &&
      object.etag !== undefined &&
      before.etag === object.etag &&
      before.size === object.size &&
      (before.kind === "dir") === object.key.endsWith("/") &&
      object.lastModified !== undefined &&
      object.lastModified.getTime() < (previous?.writtenBefore ?? 0)
    ) {
      return before;
    }
    signal?.throwIfAborted();
    const head = await store.head(object.key);
    const meta = decodeMeta(head?.meta);
    if (!head || !meta) return undefined;
    const tags = { ...(head.versionId ? { versionId: head.versionId } : {}), ...(object.etag ? { etag: object.etag } : {}) };
    if (meta.kind !== "symlink") return plainEntry(path, head, meta, tags);
    const link = await symlinkTarget(store, object.key, meta, head.versionId);
    if (link !== undefined) return { path, kind: "symlink", size: 0, mode: meta.mode, mtimeNs: meta.mtimeNs, link, ...tags };
    try {
      return await linkEntryReadAgain(store, object.key, path, tags.etag);
    } catch (error) {
      if (!onUnreadable || !(error instanceof UnreadableEntryError)) throw error;
      onUnreadable(path, error);
      return undefined;
    }
  });
  return entries.filter((entry) => entry !== undefined).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/**
 * Entries of the live mirror of a set now (a history checkpoint); `previous`,
 * a manifest taken at `takenAt`, spares the HEADs of objects not written since.
 */
export async function liveManifest(
  store: TargetStore,
  set: string,
  previous?: { takenAt: string; entries: readonly SnapshotEntry[] },
  onUnreadable?: OnUnreadable,
): Promise<SnapshotEntry[]> {
  const known = previous && { writtenBefore: writtenBefore(previous.takenAt), entries: new Map(previous.entries.map((e) => [e.path, e])) };
  return liveEntries(store, set, undefined, known, onUnreadable);
}

/**
 * Writes a manifest of the set's live mirror as it is now. The caller applies
 * nothing of the set meanwhile, and raises the set's snapshot generation once
 * this resolved, so what the manifest names is preserved before it changes.
 */
export async function takeSnapshot(
  store: TargetStore,
  set: string,
  request: SnapshotRequest,
  options: { now: Date; signal?: AbortSignal },
): Promise<SnapshotSummary> {
  // Written already (a marker whose checks go on in this invocation): nothing after the marker was applied since.
  const existing = (await store.get(snapshotSummaryKey(set, request.id)))?.body;
  if (existing) return SnapshotSummarySchema.parse(JSON.parse(existing.toString("utf8")));
  const versioned = await store.versioned();
  // An entry whose object cannot be read is left out and named: the rest of the set is still a snapshot, and its
  // task fails naming the entry (snapshot-checks.ts), so no snapshot missing it is ever taken as the whole set.
  const unreadable: { path: string; problem: string }[] = [];
  const entries = await liveEntries(store, set, options.signal, await previousSnapshot(store, set), (path, error) =>
    unreadable.push({ path, problem: error.message.startsWith(`${path}: `) ? error.message.slice(path.length + 2) : error.message }),
  );
  options.signal?.throwIfAborted();
  unreadable.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const summary = {
    id: request.id,
    set,
    taskId: request.taskId,
    ...(request.label !== undefined ? { label: request.label } : {}),
    seq: request.seq,
    takenAt: options.now.toISOString(),
    files: entries.filter((e) => e.kind === "file").length,
    dirs: entries.filter((e) => e.kind === "dir").length,
    symlinks: entries.filter((e) => e.kind === "symlink").length,
    bytes: entries.reduce((sum, e) => sum + (e.kind === "file" ? e.size : 0), 0),
    versioned,
    ...(unreadable.length > 0 ? { unreadable: unreadable.slice(0, MAX_NAMED_PATHS), unreadableCount: unreadable.length } : {}),
  };
  return writeSnapshot(store, summary, entries);
}

function parseSummary(body: Buffer): SnapshotSummary | undefined {
  try {
    const parsed = SnapshotSummarySchema.safeParse(JSON.parse(body.toString("utf8")));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** The set's readable snapshots, oldest first, and the keys of summaries that exist but cannot be read. */
async function readSummaries(store: TargetStore, set: string): Promise<{ summaries: SnapshotSummary[]; unreadable: string[] }> {
  const summaries: SnapshotSummary[] = [];
  const unreadable: string[] = [];
  for await (const object of store.list(snapshotsPrefix(set))) {
    if (!object.key.endsWith("/snapshot.json")) continue;
    const body = (await store.get(object.key))?.body;
    if (!body) continue;
    const summary = parseSummary(body);
    if (summary) summaries.push(summary);
    else unreadable.push(object.key);
  }
  summaries.sort((a, b) => (a.takenAt < b.takenAt ? -1 : a.takenAt > b.takenAt ? 1 : a.id < b.id ? -1 : 1));
  return { summaries, unreadable };
}

/** The set's snapshots, oldest first (summaries that cannot be read left out). */
export async function listSnapshots(store: TargetStore, set: string): Promise<SnapshotSummary[]> {
  return (await readSummaries(store, set)).summaries;
}

/** The summary of one snapshot; throws SnapshotError naming the snapshots there are when it does not exist. */
export async function readSnapshot(store: TargetStore, set: string, id: string): Promise<SnapshotSummary> {
  const body = (await store.get(snapshotSummaryKey(set, id)))?.body;
  if (!body) {
    const known = (await listSnapshots(store, set)).map((s) => s.id);
    throw new SnapshotError(`set "${set}" has no snapshot "${id}" (${known.length > 0 ? `snapshots: ${known.slice(-5).join(", ")}` : "it has no snapshots"}; see \`tidemark snapshots ${set}\`)`);
  }
  return SnapshotSummarySchema.parse(JSON.parse(body.toString("utf8")));
}

/** The lines of a snapshot's manifest, checked against the sha256 its summary recorded. */
async function manifestLines(store: TargetStore, summary: SnapshotSummary): Promise<unknown[]> {
  const body = (await store.get(snapshotManifestKey(summary.set, summary.id)))?.body;
  if (!body) throw new SnapshotError(`the manifest of snapshot ${summary.id} is missing`);
  if (sha256(body) !== summary.manifestSha256) throw new SnapshotError(`the manifest of snapshot ${summary.id} does not match its recorded sha256`);
  return gunzipSync(body)
    .toString("utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line): unknown => JSON.parse(line));
}

/** The entries of a file set's snapshot. */
export async function readManifest(store: TargetStore, summary: SnapshotSummary): Promise<SnapshotEntry[]> {
  if (summary.volume) throw new SnapshotError(`snapshot ${summary.id} is of a volume: it lists blocks, not files`);
  return (await manifestLines(store, summary)).map((line) => SnapshotEntrySchema.parse(line));
}

/** The blocks holding data in a volume set's snapshot, in index order. */
export async function readBlockManifest(store: TargetStore, summary: SnapshotSummary): Promise<VolumeBlockEntry[]> {
  if (!summary.volume) throw new SnapshotError(`snapshot ${summary.id} is of a file set, not a volume`);
  return (await manifestLines(store, summary)).map((line) => VolumeBlockEntrySchema.parse(line));
}

/** Writes a snapshot's manifest (gzip'ed JSON lines), then its summary: a snapshot is listed only once its manifest is complete. */
export async function writeSnapshot(store: TargetStore, summary: Omit<SnapshotSummary, "manifestSha256">, lines: readonly unknown[]): Promise<SnapshotSummary> {
  const manifest = gzipSync(lines.map((line) => `${JSON.stringify(line)}\n`).join(""));
  const complete: SnapshotSummary = { ...summary, manifestSha256: sha256(manifest) };
  await store.put(snapshotManifestKey(summary.set, summary.id), manifest, {});
  await store.put(snapshotSummaryKey(summary.set, summary.id), Buffer.from(JSON.stringify(complete, null, 2)), {});
  return complete;
}

/** True when live content written at generation `gen` may be named by a snapshot the set keeps. */
function neededBySnapshots(status: SetStatus, gen: number): boolean {
  return status.snapshotsRetained > 0 && gen < status.snapshotGen;
}

/**
 * Before the live object at key is overwritten, moved or deleted: when a kept
 * snapshot may name its content, copy it to preserved/ (once per content
 * hash). Nothing to do on a versioned bucket, whose manifests name versions.
 */
export async function preserveBeforeReplace(store: TargetStore, set: string, key: string, status: SetStatus): Promise<void> {
  if (status.snapshotsRetained === 0 || (await store.versioned())) return;
  const head = await store.head(key);
  const meta = decodeMeta(head?.meta);
  if (!meta || meta.kind !== "file" || !meta.sha256 || !neededBySnapshots(status, meta.gen ?? 0)) return;
  const target = preservedKey(set, meta.sha256);
  if (await store.head(target)) return;
  await store.copy(key, target, { [META.sha256]: meta.sha256 });
}

export interface PruneResult {
  readonly kept: string[];
  readonly deleted: string[];
  /** Snapshots beyond `keep` kept anyway: taken inside the protection window. */
  readonly protected?: string[];
  readonly contentDeleted: number;
  readonly contentBytesDeleted: number;
  /** Summaries that could not be read: what their snapshots need is unknown, so no content was deleted. */
  readonly unreadable?: string[];
}

export interface PruneOptions {
  readonly keep: number;
  readonly olderThan?: Date;
  readonly sweep?: boolean;
  /** Snapshots taken at or after this are kept whatever `keep` says (the protection window's start). */
  readonly protectFrom?: Date;
  /** Deletes manifests only: content is left to the history's retention, which knows what the window needs. */
  readonly leaveContent?: boolean;
  /** Content hashes to keep besides those of kept snapshots (what the point-in-time history needs). */
  readonly alsoNeeded?: { readonly files: ReadonlySet<string>; readonly blocks: ReadonlySet<string> };
}

/** For each snapshot (oldest first), how many complete snapshots are newer than it. */
function newerComplete(all: readonly SnapshotSummary[]): number[] {
  const counts: number[] = [];
  let newer = 0;
  for (const summary of [...all].reverse()) {
    counts.unshift(newer);
    if (leftOutCount(summary) === 0) newer += 1;
  }
  return counts;
}

/**
 * Deletes the set's snapshots beyond the newest `keep` and the newest `keep` complete ones (and, with
 * olderThan, those taken before it), never one taken at or after
 * `protectFrom`, then the preserved content that no kept snapshot names:
 * after a deletion, or always with `sweep`.
 */
export async function pruneSnapshots(store: TargetStore, set: string, options: PruneOptions): Promise<PruneResult> {
  const { summaries: all, unreadable } = await readSummaries(store, set);
  const volume = await VolumeMap.open(store, set);
  // The newest EBS snapshot's blocks: the next one uploads what differs from them.
  const ebsParent = volume.state.ebs?.manifestSnapshotId;
  const cut = options.olderThan?.toISOString();
  const protectFrom = options.protectFrom?.toISOString();
  // The newest `keep` of any kind, plus the newest `keep` complete ones: one that left entries out never costs an older
  // complete one its place, and a set whose every snapshot leaves something out still keeps at most `keep`.
  const completeNewer = newerComplete(all);
  const newest = (s: SnapshotSummary, i: number) => all.length - 1 - i < options.keep || (leftOutCount(s) === 0 && (completeNewer[i] ?? 0) < options.keep);
  const wanted = (s: SnapshotSummary, i: number) => s.id === ebsParent || (newest(s, i) && (cut === undefined || s.takenAt >= cut));
  const inWindow = (s: SnapshotSummary) => protectFrom !== undefined && s.takenAt >= protectFrom;
  const kept = all.filter((s, i) => wanted(s, i) || inWindow(s));
  const protectedIds = all.filter((s, i) => !wanted(s, i) && inWindow(s)).map((s) => s.id);
  const keptIds = new Set(kept.map((s) => s.id));
  const deleted = all.filter((s) => !keptIds.has(s.id));
  for (const snapshot of deleted) {
    // The summary first: a half-deleted snapshot is no longer listed.
    await store.delete(snapshotSummaryKey(set, snapshot.id));
    await store.delete(snapshotManifestKey(set, snapshot.id));
    await store.delete(snapshotProofKey(set, snapshot.id));
  }
  const clamped = protectFrom !== undefined ? { protected: protectedIds } : {};
  // A summary that cannot be read may be a snapshot that still needs its content: nothing is swept then.
  if (unreadable.length > 0) return { kept: kept.map((s) => s.id), deleted: deleted.map((s) => s.id), ...clamped, contentDeleted: 0, contentBytesDeleted: 0, unreadable };
  if ((deleted.length === 0 && !options.sweep) || options.leaveContent) {
    return { kept: kept.map((s) => s.id), deleted: deleted.map((s) => s.id), ...clamped, contentDeleted: 0, contentBytesDeleted: 0 };
  }
  const referenced = new Set<string>(options.alsoNeeded?.files);
  const blocks = new Set<string>(options.alsoNeeded?.blocks);
  for (const snapshot of kept) {
    if (snapshot.volume) for (const entry of await readBlockManifest(store, snapshot)) blocks.add(entry.sha256);
    else for (const entry of await readManifest(store, snapshot)) if (entry.sha256) referenced.add(entry.sha256);
  }
  let contentDeleted = 0;
  let contentBytesDeleted = 0;
  const preserved = preservedPrefix(set);
  for await (const object of store.list(preserved)) {
    if (referenced.has(object.key.slice(preserved.length))) continue;
    await store.delete(object.key);
    contentDeleted += 1;
    contentBytesDeleted += object.size;
  }
  if (volume.exists) {
    const swept = await volume.sweep(blocks);
    contentDeleted += swept.deleted;
    contentBytesDeleted += swept.bytes;
  }
  return { kept: kept.map((s) => s.id), deleted: deleted.map((s) => s.id), ...clamped, contentDeleted, contentBytesDeleted };
}
