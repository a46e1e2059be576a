// `tidemark restore`: a snapshot's manifest turned back into a tree on disk
// through the recovery point writer (restore-writer.ts): contents streamed
// from the bucket (restore-content.ts) and checked
// against their sha256, modes, mtimes, symlinks, hard links and empty
// folders; what cannot be written is reported, not fatal.

import { leftOutCount, type ChangingWhileRead, type SnapshotEntry, type SnapshotSummary } from "../contract/tasks.ts";
import type { RestoreFailure } from "./restore-writer.ts";
import { readManifest, type TargetStore } from "../lambdas/target/index.ts";
import { ContentReader } from "./restore-content.ts";
import { RestoreError, writeRecoveryPoint, type RecoveryPoint, type WriteOptions, type WriteReport } from "./restore-writer.ts";

export { RestoreError } from "./restore-writer.ts";

export interface RestoreResult extends WriteReport {
  readonly snapshot: string;
  /** Entries the snapshot left out when it was taken beyond those its summary names (and `failures` lists): not restored either. */
  readonly leftOutUnnamed?: number;
  /** Files that kept changing while the snapshot's barrier read them (its summary's list): restored as read, possibly torn. */
  readonly possiblyTorn?: ChangingWhileRead;
}

/** A file set's snapshot as a recovery point: its manifest, and each file's bytes from the bucket (live, versioned or preserved). */
export async function snapshotRecoveryPoint(store: TargetStore, summary: SnapshotSummary): Promise<RecoveryPoint<SnapshotEntry>> {
  const reader = new ContentReader(store, summary.set);
  const unrestorable = leftOut(summary);
  return { entries: await readManifest(store, summary), content: (entry) => reader.read(entry), reread: (entry) => reader.reread(entry), written: (chunk) => reader.written(chunk), finished: () => reader.finished(), ...(unrestorable.length > 0 ? { unrestorable } : {}) };
}

/**
 * The entries the snapshot lacks: left out when it was taken (summary.unreadable), or held by the source at the marker
 * and never replicated (summary.notReplicated). Each is named as not restored, never silently missing.
 */
function leftOut(summary: SnapshotSummary): RestoreFailure[] {
  const unreadable = (summary.unreadable ?? []).map(({ path, problem }) => ({ path, reason: `left out of snapshot ${summary.id} when it was taken: ${problem}` }));
  const notReplicated = (summary.notReplicated?.paths ?? []).map(({ path, problem }) => ({ path, reason: `left out of snapshot ${summary.id} when it was taken: the source held it, and ${problem}` }));
  return [...unreadable, ...notReplicated];
}

/** Left-out entries the summary does not name (it names at most MAX_NAMED_PATHS of each kind, and no name the target cannot hold). */
export function unnamedLeftOut(summary: SnapshotSummary): number {
  return Math.max(0, leftOutCount(summary) - (summary.unreadable?.length ?? 0) - (summary.notReplicated?.paths.length ?? 0));
}

export async function restoreSnapshot(store: TargetStore, summary: SnapshotSummary, to: string, options: WriteOptions = {}): Promise<RestoreResult> {
  const unnamed = unnamedLeftOut(summary);
  // --delete would remove those unnamed entries as "not in the snapshot", although the snapshot only could not read them.
  if (options.delete && unnamed > 0) {
    throw new RestoreError(
      `snapshot ${summary.id} left out ${leftOutCount(summary)} entries when it was taken and names only ${leftOutCount(summary) - unnamed} of them: --delete could remove the other ${unnamed} from ${to}; restore without --delete`,
    );
  }
  const point = await snapshotRecoveryPoint(store, summary);
  return {
    snapshot: summary.id,
    ...(await writeRecoveryPoint(point, to, options)),
    ...(unnamed > 0 ? { leftOutUnnamed: unnamed } : {}),
    ...(summary.changingWhileRead ? { possiblyTorn: summary.changingWhileRead } : {}),
  };
}
