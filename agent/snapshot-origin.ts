// Where a snapshot came from, for restore and drill output: a marker of the
// agent's stream (journaled at a seq, after everything the source wrote before
// it, quiesced when asked) or a marker sent straight to the queue (no seq: the
// target's state when the marker arrived, crash-consistent, by whoever may
// send to the queue). `--snapshot latest` is the newest snapshot of either
// kind; what it resolved to is always said.

import type { SnapshotSummary } from "../contract/tasks.ts";
import { listSnapshots, type TargetStore } from "../lambdas/target/index.ts";

/** A snapshot (or a drill's recovery point) as far as its origin goes. */
export interface SnapshotOrigin {
  readonly taskId?: string | undefined;
  /** The marker's seq in the set's stream; null for a marker sent straight to the queue; undefined when unknown (an older report). */
  readonly seq?: number | null | undefined;
}

/** "from the agent's stream" or "from the queue" (JSON); undefined when the origin is not known. */
export function originKind(snapshot: SnapshotOrigin): "stream" | "queue" | undefined {
  return snapshot.seq === null ? "queue" : snapshot.seq === undefined ? undefined : "stream";
}

/** The origin as a phrase: ", from marker T at seq N of the agent's stream" or ", from marker T sent straight to the queue (…)". */
export function originPhrase(snapshot: SnapshotOrigin): string {
  const marker = snapshot.taskId !== undefined ? `marker ${snapshot.taskId}` : "a marker";
  const kind = originKind(snapshot);
  if (kind === "stream") return `, from ${marker} at seq ${snapshot.seq} of the agent's stream`;
  if (kind === "queue") return `, from ${marker} sent straight to the queue (no seq: the target's state when it arrived, crash-consistent, not a point of the agent's stream)`;
  return "";
}

/** What `--snapshot latest` resolved to: the newest snapshot, and the newest from the agent's stream when that is an older one. */
export interface LatestSnapshot {
  readonly summary: SnapshotSummary;
  readonly newestFromStream?: SnapshotSummary;
}

/** The set's newest snapshot (undefined: none), with the newest of the agent's stream when the newest came from the queue. */
export async function latestSnapshot(store: TargetStore, set: string): Promise<LatestSnapshot | undefined> {
  const snapshots = await listSnapshots(store, set);
  const summary = snapshots.at(-1);
  if (!summary) return undefined;
  if (originKind(summary) !== "queue") return { summary };
  const newestFromStream = snapshots.findLast((s) => originKind(s) === "stream");
  return { summary, ...(newestFromStream ? { newestFromStream } : {}) };
}

/** The line restore prints for `--snapshot latest` (drill names its recovery point's origin in its own line). */
export function latestLine(latest: LatestSnapshot): string {
  const { summary, newestFromStream } = latest;
  const stream = newestFromStream ? `; the newest from the agent's stream is ${newestFromStream.id} (taken ${newestFromStream.takenAt}): give \`--snapshot ${newestFromStream.id}\` for it` : "";
  return `--snapshot latest is ${summary.id} (taken ${summary.takenAt})${originPhrase(summary)}${stream}`;
}

/** `latest` in restore's --json: the snapshot it was, where it came from, and the newest of the agent's stream when that is another. */
export function latestJson(latest: LatestSnapshot): { id: string; takenAt: string; taskId: string; seq: number | null; origin: "stream" | "queue" | undefined; newestFromStream?: string } {
  const { summary, newestFromStream } = latest;
  return { id: summary.id, takenAt: summary.takenAt, taskId: summary.taskId, seq: summary.seq, origin: originKind(summary), ...(newestFromStream ? { newestFromStream: newestFromStream.id } : {}) };
}
