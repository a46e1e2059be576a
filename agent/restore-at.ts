// `tidemark restore --at TIME`: the set as it was at a moment of the
// protection window, rebuilt from the target's point-in-time history (a
// checkpoint plus a replay) and written by the restore writer. The moment is
// crash-consistent; a marker's snapshot is the application-consistent point.

import type { SnapshotEntry } from "../contract/tasks.ts";
import { readBlock, stateAt, type StateAt, type TargetStore } from "../lambdas/target/index.ts";
import { RestoreError, writeRecoveryPoint, type RecoveryPoint, type WriteOptions, type WriteReport } from "./restore-writer.ts";
import { ContentReader } from "./restore-content.ts";
import { writeVolume } from "./restore-volume.ts";
import { UsageError } from "./commands/command.ts";

/** A usage error: a command given a moment it cannot read exits 2, as for any other bad option value. */
export class TimeSpecError extends UsageError {
  override name = "TimeSpecError";
}

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * A moment from the command line: ISO 8601 (`2026-11-30T10:15:02.250Z`; local
 * time when it has no zone), or a span ago (`90s`, `15m`, `2h`, `3d`, with or
 * without " ago"). Throws TimeSpecError saying what it accepts.
 */
export function parseMoment(text: string, now: number = Date.now()): number {
  const spec = text.trim();
  const relative = /^(\d+(?:\.\d+)?)\s*([smhd])(?:\s+ago)?$/.exec(spec);
  if (relative) return Math.round(now - Number(relative[1]) * (UNIT_MS[relative[2] ?? "s"] ?? 1000));
  const iso = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?(?:Z|[+-]\d{2}:?\d{2})?$/.exec(spec);
  if (iso) {
    // A date alone would be read as UTC midnight: as local midnight, like a time without a zone.
    const normal = (spec.length === 10 ? `${spec}T00:00` : spec.replace(" ", "T")).replace(/(\.\d{3})\d+/, "$1");
    const ms = Date.parse(normal);
    if (Number.isFinite(ms)) return ms;
  }
  throw new TimeSpecError(`"${text}" is not a moment: use ISO 8601 (2026-11-30T10:15:02.250Z, or local time without a zone) or a span ago (90s, 15m, 2h, 3d)`);
}

export interface RestoreAtResult {
  readonly set: string;
  /** The moment asked for, and the last change the restore holds (ISO). */
  readonly at: string;
  readonly lastChangeAt: string;
  readonly lastSeq?: number;
  readonly to: string;
  readonly kind: "files" | "volume";
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
  /** Volume sets: the image's size and blocks holding data. */
  readonly size?: number;
  readonly blocks?: number;
  readonly bytes: number;
  /** Set when the moment is after the newest change the target holds: changes journaled since may still be on their way. */
  readonly newestChangeAt?: string;
  /** File sets: what the restore writer reports (entries not written and why, extra entries, hard links). */
  readonly hardLinks?: number;
  readonly failures?: WriteReport["failures"];
  readonly extra?: string[];
  readonly deleted?: string[];
  readonly setIdDropped?: WriteReport["setIdDropped"];
}

/** A file set as it was at `at` (ms) as a recovery point for the restore writer: the replayed entries, each file's bytes from the bucket. */
export async function pointInTime(store: TargetStore, set: string, at: number): Promise<{ found: StateAt; point?: RecoveryPoint<SnapshotEntry> }> {
  const found = await stateAt(store, set, at);
  if (found.state.kind === "volume") return { found };
  const reader = new ContentReader(store, set);
  // Entries the history's checkpoint could not read: named as not restorable, never restored empty.
  const unrestorable = (found.state.unreadable ?? []).map(({ path, reason }) => ({ path, reason: `not restorable at this moment: the history checkpoint could not read it (${reason})` }));
  return { found, point: { entries: found.state.entries, content: (entry) => reader.read(entry), reread: (entry) => reader.reread(entry), written: (chunk) => reader.written(chunk), finished: () => reader.finished(), ...(unrestorable.length > 0 ? { unrestorable } : {}) } };
}

/** Restores the set as it was at `at` (ms) into `to`: a folder for a file set, a file (or device) for a volume set. */
export async function restoreAt(store: TargetStore, set: string, at: number, to: string, options: WriteOptions = {}): Promise<RestoreAtResult> {
  const { found, point } = await pointInTime(store, set, at);
  const common = {
    set,
    at: new Date(at).toISOString(),
    lastChangeAt: new Date(found.lastChangeAt).toISOString(),
    ...(found.lastSeq !== undefined ? { lastSeq: found.lastSeq } : {}),
    ...(at > found.newestChangeAt ? { newestChangeAt: new Date(found.newestChangeAt).toISOString() } : {}),
  };
  if (found.state.kind === "volume") {
    const { size, blocks } = found.state;
    const byIndex = new Map(blocks.map((b) => [b.index, b]));
    const { bytes } = await writeVolume(
      to,
      size,
      blocks.map((b) => b.index),
      async (index) => {
        const entry = byIndex.get(index);
        if (!entry) throw new RestoreError(`internal: block ${index} is not in the state`);
        return readBlock(store, set, entry);
      },
      { ...(options.force !== undefined ? { force: options.force } : {}), ...(options.onProgress ? { onProgress: options.onProgress } : {}) },
    );
    return { ...common, to, kind: "volume", files: 0, dirs: 0, symlinks: 0, size, blocks: blocks.length, bytes };
  }
  if (!point) throw new RestoreError(`internal: set "${set}" at ${common.at} is neither a tree nor a volume`);
  return { ...common, kind: "files", ...(await writeRecoveryPoint(point, to, options)) };
}
