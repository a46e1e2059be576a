// Snapshots written straight into a target store, one file each with its content preserved, as a snapshot task leaves
// them: what the restore, drill and prune tests read back without replicating anything first.

import { preservedKey } from "../../contract/layout.ts";
import type { SnapshotEntry, SnapshotSummary } from "../../contract/tasks.ts";
import type { TargetStore } from "../../lambdas/store/store.ts";
import { writeSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { sha256Of } from "./content.ts";

export interface OneFile extends Partial<Pick<SnapshotSummary, "unreadable" | "unreadableCount" | "changingWhileRead">> {
  readonly id: string;
  /** @default "s" */
  readonly set?: string;
  /** The file's path and content. @default `${id}.txt`, `content of ${id}` */
  readonly path?: string;
  readonly content?: string;
  /** @default 2026-01-01T00:00:00.000Z */
  readonly takenAt?: string;
  /** The file's mode. @default 0o644 */
  readonly mode?: number;
}

/** Writes snapshot `id` holding one file, its content preserved; the rest of `snapshot` (what it left out, what kept changing) goes in its summary. */
export async function oneFileSnapshot(store: TargetStore, snapshot: OneFile): Promise<void> {
  const { id, set = "s", path = `${id}.txt`, content = `content of ${id}`, takenAt = "2026-01-01T00:00:00.000Z", mode = 0o644, ...summary } = snapshot;
  const entry: SnapshotEntry = { path, kind: "file", size: Buffer.byteLength(content), mode, mtimeNs: "1700000000000000000", sha256: sha256Of(content) };
  await store.put(preservedKey(set, sha256Of(content)), Buffer.from(content));
  await writeSnapshot(store, { id, set, taskId: `t-${id}`, seq: 1, takenAt, files: 1, dirs: 0, symlinks: 0, bytes: entry.size, versioned: false, ...summary }, [entry]);
}

/** The first `named` entries a snapshot left out, as its summary names them: link000, link001, … (altered links). */
export const linkProblems = (named: number) => Array.from({ length: named }, (_, i) => ({ path: `link${String(i).padStart(3, "0")}`, problem: "altered" }));
