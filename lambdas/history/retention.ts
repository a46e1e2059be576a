// History retention, run by the applier on its own schedule: checkpoints and
// segments older than the window needs go, then preserved content (and volume
// blocks) that neither a moment of the window nor a kept snapshot needs.

import { DAY_MS } from "../../contract/history.ts";
import type { TargetStore } from "../store/store.ts";
import { pruneSnapshots, type PruneResult } from "../tasks/snapshots.ts";
import { deleteCheckpoint, deleteSegment, listCheckpoints, listSegments, readCheckpointBlocks, readCheckpointEntries, readSegment } from "./history-store.ts";

export interface HistoryRetentionResult {
  readonly checkpointsDeleted: number;
  readonly segmentsDeleted: number;
  readonly content: PruneResult;
}

/** Content hashes (files, volume blocks) some moment of the history still held needs. */
export interface HistoryNeeds {
  readonly files: Set<string>;
  readonly blocks: Set<string>;
}

/** What the history as stored now needs: its oldest checkpoint's content and everything its segments put. */
export async function historyNeeds(store: TargetStore, set: string): Promise<HistoryNeeds> {
  const files = new Set<string>();
  const blocks = new Set<string>();
  const base = (await listCheckpoints(store, set))[0];
  if (!base) return { files, blocks };
  if (base.kind === "files") for (const entry of await readCheckpointEntries(store, base)) if (entry.sha256) files.add(entry.sha256);
  if (base.kind === "volume") for (const entry of await readCheckpointBlocks(store, base)) blocks.add(entry.sha256);
  for (const n of await listSegments(store, set)) {
    if (n < base.segment) continue;
    for (const entry of await readSegment(store, set, n)) {
      if (entry.op === "put") files.add(entry.sha256);
      if (entry.op === "block" && entry.sha256 !== null) blocks.add(entry.sha256);
    }
  }
  return { files, blocks };
}

/**
 * Keeps the newest checkpoint at or before the window's start (every moment
 * of the window replays from it) and everything after it; deletes the rest,
 * then content nothing kept needs.
 */
export async function applyHistoryRetention(store: TargetStore, set: string, days: number, now: Date): Promise<HistoryRetentionResult> {
  const start = now.getTime() - days * DAY_MS;
  const checkpoints = await listCheckpoints(store, set);
  const base = checkpoints.findLast((c) => c.at <= start) ?? checkpoints[0];
  let checkpointsDeleted = 0;
  let segmentsDeleted = 0;
  if (base) {
    for (const checkpoint of checkpoints) {
      if (checkpoint.segment >= base.segment) continue;
      await deleteCheckpoint(store, set, checkpoint.segment);
      checkpointsDeleted += 1;
    }
    for (const n of await listSegments(store, set)) {
      if (n >= base.segment) break;
      await deleteSegment(store, set, n);
      segmentsDeleted += 1;
    }
  }
  const content = await pruneSnapshots(store, set, { keep: Number.MAX_SAFE_INTEGER, sweep: true, alsoNeeded: await historyNeeds(store, set) });
  return { checkpointsDeleted, segmentsDeleted, content };
}
