// Reading task results from the target: `tidemark task --wait` waits for
// one, `tidemark tasks` lists a set's history.

import { isFinished, type TaskResult } from "../contract/tasks.ts";
import { listTasks, readSetStatus, readTaskResult, type TargetStore } from "../lambdas/target/index.ts";
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
