// A set as it was at a moment: the newest checkpoint at or before it, plus a
// replay of the segments after it up to the moment (Litestream's restore:
// snapshot plus WAL). Written once against the history store; the CLI's
// `restore --at` and `timeline` use it.

import { type CheckpointSummary, type HistoryEntry } from "../../contract/history.ts";
import type { SnapshotEntry, VolumeBlockEntry } from "../../contract/tasks.ts";
import { blockCount, blockLength } from "../../contract/wire.ts";
import type { TargetStore } from "../store/store.ts";
import { HistoryError, listCheckpoints, listSegments, readCheckpointBlocks, readCheckpointEntries, readSegment } from "./history-store.ts";

const SYMLINK_MODE = 0o777;

export interface FilesAt {
  readonly kind: "files";
  /** Entries of the set at the moment, sorted by path (folders before what they hold). */
  readonly entries: SnapshotEntry[];
  /** Entries the checkpoint could not read and no change replayed after it rewrote: not restorable at the moment, and why. */
  readonly unreadable?: { path: string; reason: string }[];
}

export interface VolumeAt {
  readonly kind: "volume";
  readonly size: number;
  /** Blocks holding data, in index order. */
  readonly blocks: VolumeBlockEntry[];
}

export interface StateAt {
  readonly set: string;
  /** The moment asked for (ms). */
  readonly at: number;
  /** The time of the last change the state holds (ms). */
  readonly lastChangeAt: number;
  /** The seq of that change, when one was replayed. */
  readonly lastSeq?: number;
  /** The newest change the history holds (ms): a moment after it is the set as last applied. */
  readonly newestChangeAt: number;
  readonly state: FilesAt | VolumeAt;
}

/** The range of moments the history can restore, and what lies in it. */
export interface HistoryRange {
  readonly checkpoints: CheckpointSummary[];
  readonly segments: number[];
}

async function range(store: TargetStore, set: string): Promise<HistoryRange> {
  const checkpoints = await listCheckpoints(store, set);
  if (checkpoints.length === 0) throw new HistoryError(`set "${set}" has no point-in-time history on the target (the applier records it when tidemark:pointInTimeDays is above 0)`);
  return { checkpoints, segments: await listSegments(store, set) };
}

/** Segments from `from` on, checked to be contiguous: a missing one would silently drop changes. */
function segmentsFrom(set: string, segments: readonly number[], from: number): number[] {
  const out = segments.filter((n) => n >= from);
  out.forEach((n, i) => {
    if (n !== from + i) throw new HistoryError(`history segment ${from + i} of set "${set}" is missing: moments after it cannot be rebuilt`);
  });
  return out;
}

function replayFile(state: Map<string, SnapshotEntry>, entry: HistoryEntry): void {
  switch (entry.op) {
    case "put":
      state.set(entry.path, {
        path: entry.path,
        kind: "file",
        size: entry.size,
        mode: entry.mode,
        mtimeNs: entry.mtimeNs,
        sha256: entry.sha256,
        ...(entry.versionId !== undefined ? { versionId: entry.versionId } : {}),
        ...(entry.linkGroup !== undefined ? { linkGroup: entry.linkGroup } : {}),
      });
      return;
    case "mkdir":
      state.set(entry.path, { path: entry.path, kind: "dir", size: 0, mode: entry.mode, mtimeNs: entry.mtimeNs });
      return;
    case "symlink":
      state.set(entry.path, { path: entry.path, kind: "symlink", size: 0, mode: SYMLINK_MODE, mtimeNs: entry.mtimeNs, link: entry.target });
      return;
    case "delete":
      state.delete(entry.path);
      return;
    case "rename": {
      const moved = state.get(entry.from);
      // Missing: a checkpoint written while a retried message was half applied already holds the move.
      if (!moved) return;
      state.delete(entry.from);
      // The content moved to another object: the version the copy wrote there, when the history names it.
      const { versionId: _old, etag: _etag, ...rest } = moved;
      state.set(entry.to, { ...rest, path: entry.to, ...(entry.versionId !== undefined ? { versionId: entry.versionId } : {}) });
      return;
    }
    case "block":
    case "clear":
    case "marker":
      return;
  }
}

/** A change after the checkpoint to an entry it could not read: rewritten or deleted, it is no longer missing; moved, it is missing under its new name. */
function replayUnreadable(unreadable: Map<string, string>, entry: HistoryEntry): void {
  if (entry.op === "put" || entry.op === "mkdir" || entry.op === "symlink" || entry.op === "delete") unreadable.delete(entry.path);
  else if (entry.op === "rename") {
    const reason = unreadable.get(entry.from);
    unreadable.delete(entry.to);
    if (reason === undefined) return;
    unreadable.delete(entry.from);
    unreadable.set(entry.to, reason);
  }
}

function replayVolume(blocks: Map<number, string>, volume: { size: number }, entry: HistoryEntry): void {
  if (entry.op === "clear") {
    blocks.clear();
    return;
  }
  if (entry.op !== "block") return;
  if (entry.volumeSize !== volume.size) {
    volume.size = entry.volumeSize;
    for (const index of blocks.keys()) if (index >= blockCount(volume.size)) blocks.delete(index);
  }
  if (entry.sha256 === null) blocks.delete(entry.index);
  else blocks.set(entry.index, entry.sha256);
}

const byPath = (a: { path: string }, b: { path: string }) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/**
 * The set as it was at `at` (ms): every change recorded at or before it and
 * nothing after. Throws HistoryError when the moment is before the history
 * begins or a segment it needs is missing.
 */
export async function stateAt(store: TargetStore, set: string, at: number): Promise<StateAt> {
  const { checkpoints, segments } = await range(store, set);
  const checkpoint = checkpoints.findLast((c) => c.at <= at);
  if (!checkpoint) {
    const first = checkpoints[0];
    throw new HistoryError(
      `${new Date(at).toISOString()} is before the point-in-time history of set "${set}" begins (${first ? new Date(first.at).toISOString() : "?"}); see \`tidemark timeline ${set}\``,
    );
  }
  const files = new Map<string, SnapshotEntry>();
  const blocks = new Map<number, string>();
  const volume = { size: checkpoint.volumeSize ?? 0 };
  const unreadable = new Map((checkpoint.unreadable ?? []).map((u) => [u.path, u.reason]));
  if (checkpoint.kind === "files") for (const entry of await readCheckpointEntries(store, checkpoint)) files.set(entry.path, entry);
  else for (const entry of await readCheckpointBlocks(store, checkpoint)) blocks.set(entry.index, entry.sha256);
  let lastChangeAt = checkpoint.at;
  let lastSeq: number | undefined;
  let newestChangeAt = checkpoint.at;
  let done = false;
  for (const n of segmentsFrom(set, segments, checkpoint.segment)) {
    const entries = await readSegment(store, set, n);
    newestChangeAt = Math.max(newestChangeAt, entries.at(-1)?.at ?? 0);
    if (done) continue;
    for (const entry of entries) {
      // Stamps never decrease along the history: the first one after the moment ends the replay.
      if (entry.at > at) {
        done = true;
        break;
      }
      if (checkpoint.kind === "files") {
        replayUnreadable(unreadable, entry);
        replayFile(files, entry);
      }
      else replayVolume(blocks, volume, entry);
      lastChangeAt = entry.at;
      lastSeq = entry.seq;
    }
  }
  const state: FilesAt | VolumeAt =
    checkpoint.kind === "files"
      ? {
          kind: "files",
          entries: [...files.values()].sort(byPath),
          ...(unreadable.size > 0 ? { unreadable: [...unreadable].map(([path, reason]) => ({ path, reason })).sort(byPath) } : {}),
        }
      : {
          kind: "volume",
          size: volume.size,
          blocks: [...blocks.entries()].sort((a, b) => a[0] - b[0]).map(([index, sha256]) => ({ index, sha256, size: blockLength(volume.size, index) })),
        };
  return { set, at, lastChangeAt, ...(lastSeq !== undefined ? { lastSeq } : {}), newestChangeAt, state };
}

/** A marker recorded in the history: an application-consistent point. */
export interface TimelineMarker {
  readonly seq: number;
  readonly at: number;
  readonly id: string;
  readonly action: string;
  readonly label?: string;
}

export interface Timeline {
  readonly set: string;
  /** The earliest moment that restores (ms). */
  readonly from: number;
  /** The newest change recorded (ms): any moment from `from` on restores; later ones give the set as last applied. */
  readonly to: number;
  readonly checkpoints: number;
  readonly segments: number;
  /** Changes recorded. */
  readonly changes: number;
  readonly markers: TimelineMarker[];
}

/** What `tidemark timeline` shows: the restorable range and the markers in it. */
export async function readTimeline(store: TargetStore, set: string): Promise<Timeline> {
  const { checkpoints, segments } = await range(store, set);
  const first = checkpoints[0];
  if (!first) throw new HistoryError(`set "${set}" has no point-in-time history`);
  const markers: TimelineMarker[] = [];
  let to = first.at;
  let changes = 0;
  for (const n of segmentsFrom(set, segments, first.segment)) {
    for (const entry of await readSegment(store, set, n)) {
      to = Math.max(to, entry.at);
      if (entry.op === "marker") markers.push({ seq: entry.seq, at: entry.at, id: entry.id, action: entry.action, ...(entry.label !== undefined ? { label: entry.label } : {}) });
      else changes += 1;
    }
  }
  return { set, from: first.at, to, checkpoints: checkpoints.length, segments: segments.filter((n) => n >= first.segment).length, changes, markers };
}
