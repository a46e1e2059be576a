// Snapshots of a volume set: the block map as it is at the marker. Block
// content is stored once per hash and never overwritten, so a manifest stays
// restorable for as long as retention keeps it (sweeps spare what it names).

import { createHash } from "node:crypto";
import { blockDataKey, snapshotSummaryKey } from "../../contract/layout.ts";
import { SnapshotSummarySchema, type SnapshotSummary, type VolumeBlockEntry } from "../../contract/tasks.ts";
import type { TargetStore } from "../store/store.ts";
import { SnapshotError, writeSnapshot, type SnapshotRequest } from "../tasks/snapshots.ts";
import type { VolumeMap } from "./block-map.ts";

/**
 * Writes a manifest of the volume's blocks as they are now. A snapshot with
 * this id already written (a resumed marker) is returned as it is: nothing
 * after the marker was applied since.
 */
export async function takeVolumeSnapshot(store: TargetStore, map: VolumeMap, request: SnapshotRequest, now: Date): Promise<SnapshotSummary> {
  const existing = (await store.get(snapshotSummaryKey(map.set, request.id)))?.body;
  if (existing) return SnapshotSummarySchema.parse(JSON.parse(existing.toString("utf8")));
  const entries = await map.entries();
  return writeSnapshot(
    store,
    {
      id: request.id,
      set: map.set,
      taskId: request.taskId,
      ...(request.label !== undefined ? { label: request.label } : {}),
      seq: request.seq,
      takenAt: now.toISOString(),
      files: 0,
      dirs: 0,
      symlinks: 0,
      bytes: entries.reduce((sum, e) => sum + e.size, 0),
      versioned: false,
      volume: { size: map.state.size, blocks: entries.length },
    },
    entries,
  );
}

/** The bytes of one block of a volume snapshot, checked against its sha256. */
export async function readBlock(store: TargetStore, set: string, entry: VolumeBlockEntry): Promise<Buffer> {
  const object = await store.get(blockDataKey(set, entry.sha256));
  if (!object) throw new SnapshotError(`the content of block ${entry.index} (sha256 ${entry.sha256}) is missing from the block store`);
  if (object.body.length !== entry.size || createHash("sha256").update(object.body).digest("hex") !== entry.sha256) {
    throw new SnapshotError(`the content found for block ${entry.index} does not match the snapshot's sha256`);
  }
  return object.body;
}
