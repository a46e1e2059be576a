// Reading task results from the target: `tidemark task --wait` waits for
// one, `tidemark tasks` lists a set's history.

import { isFinished, type TaskResult } from "../contract/tasks.ts";
import { listTasks, readOwner, readSetStatus, readTaskResult, type TargetStore } from "../lambdas/target/index.ts";
import { heldNow, type HeldBy } from "./held-wait.ts";
import { silentLogger } from "./log.ts";
import { OwnerHold } from "./owner-hold.ts";
import { waitOnTarget, type TargetWaitOptions } from "./target-wait.ts";

export interface WaitOptions extends TargetWaitOptions {
  /** The marker's seq: the wait ends when the target passed it without a result. */
  readonly seq?: number;
  /** The journal generation the marker was journaled in: the target's seqs count only in it. */
  readonly generation?: string;
}

/**
 * Resolves with the task's result once the target finished it; fails when the
 * target will never reach the marker, stops moving, or `timeoutMs` passes.
 */
export async function waitForTask(store: TargetStore, set: string, id: string, options: WaitOptions = {}): Promise<TaskResult> {
  const what = `task ${id}${options.seq !== undefined ? ` (seq ${options.seq})` : ""}`;
  return waitOnTarget<TaskResult>(
    { set, what, ...(options.seq !== undefined ? { seq: options.seq } : {}), ...(options.generation !== undefined ? { generation: options.generation } : {}) },
    async () => {
      const result = await readTaskResult(store, set, id);
      if (!result) return undefined;
      return isFinished(result) ? { done: result } : { running: true };
    },
    () => readSetStatus(store, set),
    { busy: () => markerRunning(store, set), ...options },
  );
}

/** True when a marker's action of the set is running (it may hold the set's stream). */
export async function markerRunning(store: TargetStore, set: string): Promise<boolean> {
  return (await listTasks(store, set)).some((result) => !isFinished(result));
}

/** How often a command waiting on the target (`task --wait`) reads the set's owner record again. */
export const WAIT_OWNER_RECHECK_MS = 10_000;

/**
 * Who holds this host's sends of the set, as a command outside the agent sees it: the target's owner record
 * naming another key than the host's (read again every WAIT_OWNER_RECHECK_MS, so a hold that begins during the
 * wait ends it too). As in the agent, a missing or unreadable record never holds.
 */
export function heldByOwnerRecord(store: TargetStore, set: string, hostKeyId: string, recheckMs = WAIT_OWNER_RECHECK_MS): () => Promise<HeldBy | undefined> {
  const hold = new OwnerHold({ set, hostKeyId, lookup: (s) => readOwner(store, s), log: silentLogger, recheckMs });
  return () => heldNow(hold);
}
