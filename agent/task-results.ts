// Reading task results from the target: `tidemark task --wait` waits for
// one, `tidemark tasks` lists a set's history.

import { isFinished, type TaskResult } from "../contract/tasks.ts";
import { collisionTaskId, resultOfMarker } from "../contract/task-owner.ts";
import { listTasks, readOwner, readSetStatus, readTaskResult, type TargetStore } from "../lambdas/target/index.ts";
import { answering, controlSocketPath } from "./control.ts";
import { heldNow, type HeldBy } from "./held-wait.ts";
import { Journal } from "./journal.ts";
import { silentLogger } from "./log.ts";
import { OwnerHold } from "./owner-hold.ts";
import { stateLockHeld } from "./state-lock.ts";
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
      const result = await ownTaskResult(store, set, id, options);
      if (!result) return undefined;
      return isFinished(result) ? { done: result } : { running: true };
    },
    () => readSetStatus(store, set),
    // Busy (not stalled): the marker's action holds the stream, or the caller's own check (the agent sending ahead of it).
    { ...options, busy: async () => (await markerRunning(store, set)) || ((await options.busy?.()) ?? false) },
  );
}

/**
 * The result of the awaited marker: the one under its id when it is that marker's (task-owner.ts), else the one
 * the applier wrote under the marker's own id when another marker's result held it. Without a seq (a marker not
 * journaled here) any result under the id is taken, as before results named their marker.
 */
async function ownTaskResult(store: TargetStore, set: string, id: string, options: WaitOptions): Promise<TaskResult | undefined> {
  const result = await readTaskResult(store, set, id);
  if (options.seq === undefined) return result;
  const marker = { set, seq: options.seq, generation: options.generation };
  if (!result || resultOfMarker(result, marker)) return result;
  const own = await readTaskResult(store, set, collisionTaskId(id, marker));
  return own && resultOfMarker(own, marker) ? own : undefined;
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

/** How often a command waiting on the target (`task --wait`) looks for an agent that would send the marker. */
export const WAIT_AGENT_CHECK_MS = 10_000;

/**
 * Why the marker will not reach the target, as a command outside the agent sees it: no agent runs on the state
 * folder (it stopped during the wait) and the journal has not sent the marker. An agent runs while its control
 * socket answers or a live process holds the state folder's lock (an agent starting: it checks the target before
 * its socket listens). A marker already sent, one of another journal generation (the target-side checks name
 * that) or a journal that cannot be read say nothing.
 */
export function unsentWithoutAgent(stateDir: string, set: string, marker: { readonly seq: number; readonly generation: string }, everyMs = WAIT_AGENT_CHECK_MS): () => Promise<string | undefined> {
  const socket = controlSocketPath(stateDir);
  const agentRuns = async () => stateLockHeld(stateDir) || (await answering(socket));
  let checkedAt = Number.NEGATIVE_INFINITY;
  return async () => {
    if (Date.now() - checkedAt < everyMs) return undefined;
    checkedAt = Date.now();
    if (await agentRuns()) return undefined;
    let sentSeq: number | undefined;
    try {
      const journal = Journal.open(stateDir);
      try {
        if (journal.sets.knownGeneration(set)?.id === marker.generation) sentSeq = journal.sets.counters(set).sentSeq;
      } finally {
        journal.close();
      }
    } catch {
      return undefined;
    }
    // An agent that started meanwhile sends it.
    if (sentSeq === undefined || sentSeq >= marker.seq || (await agentRuns())) return undefined;
    return `no agent is running on ${stateDir} to send it (the journal sent up to seq ${sentSeq}); it stays journaled and is sent when \`tidemark run\` starts again`;
  };
}
