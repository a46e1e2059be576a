// Which recovery point a drill (or a restore) writes: a snapshot by id or the
// newest one, or a moment in time of the protection window.

import type { DrillReport } from "../contract/drills.ts";
import type { ChangingWhileRead } from "../contract/tasks.ts";
import { readSnapshot, type TargetStore } from "../lambdas/target/index.ts";
import { latestSnapshot } from "./snapshot-origin.ts";
import { snapshotRecoveryPoint, unnamedLeftOut } from "./restore.ts";
import { parseMoment, pointInTime } from "./restore-at.ts";
import type { RecoveryEntry, RecoveryPoint } from "./restore-writer.ts";

export class RecoveryPointError extends Error {
  override name = "RecoveryPointError";
}

export interface ResolvedRecoveryPoint {
  readonly point: RecoveryPoint<RecoveryEntry>;
  /** What the point is, for reports. */
  readonly description: DrillReport["recoveryPoint"];
  /** Entries the snapshot left out when it was taken that its summary does not name (it names the first 100): not restored either. */
  readonly leftOutUnnamed?: number;
  /** Files that kept changing while the snapshot's barrier read them (a torn snapshot): restored as read. */
  readonly possiblyTorn?: ChangingWhileRead;
}

/** The set as it was at `at` (ISO 8601 or a span ago, as `restore --at` reads it), replayed from the target's history. */
export async function pointInTimeRecoveryPoint(store: TargetStore, set: string, at: string): Promise<ResolvedRecoveryPoint> {
  const moment = parseMoment(at);
  const { found, point } = await pointInTime(store, set, moment);
  if (!point) throw new RecoveryPointError(`set "${set}" is a volume: drills restore file sets (restore an image with \`tidemark restore ${set} --at ${at} --to FILE\`)`);
  return {
    point,
    description: { kind: "point-in-time", id: new Date(moment).toISOString(), takenAt: new Date(found.lastChangeAt).toISOString(), ...(found.lastSeq !== undefined ? { seq: found.lastSeq } : {}) },
  };
}

/** The recovery point a drill of `set` writes: --at TIME, else --snapshot ID, else the newest snapshot. */
export async function resolveRecoveryPoint(store: TargetStore, set: string, choice: { snapshot?: string; at?: string }): Promise<ResolvedRecoveryPoint> {
  if (choice.at !== undefined && choice.snapshot !== undefined) throw new RecoveryPointError("--snapshot and --at name two recovery points: give one");
  if (choice.at !== undefined) return pointInTimeRecoveryPoint(store, set, choice.at);
  const id = choice.snapshot ?? "latest";
  // `latest`: the newest snapshot, from the agent's stream or the queue alike; the report's seq (null: the queue) says which.
  const summary = id === "latest" ? (await latestSnapshot(store, set))?.summary : await readSnapshot(store, set, id);
  if (!summary) throw new RecoveryPointError(`set "${set}" has no snapshots to drill yet (take one with \`tidemark task ${set} --wait\`)`);
  if (summary.volume) throw new RecoveryPointError(`snapshot ${summary.id} is of a volume set: drills restore file sets (restore a volume with \`tidemark restore ${set} --snapshot ${summary.id} --to FILE\`)`);
  const unnamed = unnamedLeftOut(summary);
  return {
    point: await snapshotRecoveryPoint(store, summary),
    description: { kind: "snapshot", id: summary.id, takenAt: summary.takenAt, taskId: summary.taskId, seq: summary.seq },
    ...(unnamed > 0 ? { leftOutUnnamed: unnamed } : {}),
    ...(summary.changingWhileRead ? { possiblyTorn: summary.changingWhileRead } : {}),
  };
}
