// Reading task results from the target: `tidemark task --wait` waits for
// one, `tidemark tasks` lists a set's history.

import { PREFIX, taskResultKey } from "../contract/layout.ts";
import { isFinished, TaskResultSchema, type TaskResult } from "../contract/tasks.ts";
import { readSetStatus } from "../lambdas/store/set-status.ts";
import type { TargetStore } from "../lambdas/store/store.ts";
import { OperationTimeoutError, type Progress } from "./operations.ts";

export async function readTaskResult(store: TargetStore, set: string, id: string): Promise<TaskResult | undefined> {
  const body = (await store.get(taskResultKey(set, id)))?.body;
  if (!body) return undefined;
  const parsed = TaskResultSchema.safeParse(JSON.parse(body.toString("utf8")));
  return parsed.success ? parsed.data : undefined;
}

export interface WaitOptions {
  /** The marker's seq, for progress while the target catches up. */
  readonly seq?: number;
  /** @default no limit */
  readonly timeoutMs?: number;
  readonly pollMs?: number;
  readonly onProgress?: (progress: Progress) => void;
  readonly signal?: AbortSignal;
}

/** Resolves with the task's result once the target finished it. */
export async function waitForTask(store: TargetStore, set: string, id: string, options: WaitOptions = {}): Promise<TaskResult> {
  const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : Number.POSITIVE_INFINITY;
  for (;;) {
    const result = await readTaskResult(store, set, id);
    if (result && isFinished(result)) return result;
    if (Date.now() > deadline) {
      const where = result ? "its action is still running" : "the target has not reached it yet";
      throw new OperationTimeoutError(`task ${id} of set "${set}" has not finished: ${where}; see \`tidemark tasks ${set}\` later`);
    }
    if (options.seq !== undefined) {
      const applied = await readSetStatus(store, set).then((s) => s.lastSeq, () => 0);
      options.onProgress?.({ phase: "wait", seq: options.seq, appliedSeq: Math.min(applied, options.seq) });
    }
    options.signal?.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
  }
}

/** The set's task results, oldest first (by when the applier reached them). */
export async function listTasks(store: TargetStore, set: string): Promise<TaskResult[]> {
  const results: TaskResult[] = [];
  const prefix = `${PREFIX.tasks}${set}/`;
  for await (const object of store.list(prefix)) {
    if (!object.key.endsWith(".json")) continue;
    const result = await readTaskResult(store, set, object.key.slice(prefix.length, -".json".length));
    if (result) results.push(result);
  }
  return results.sort((a, b) => (a.reachedAt < b.reachedAt ? -1 : a.reachedAt > b.reachedAt ? 1 : 0));
}
