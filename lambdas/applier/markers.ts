// A task marker reached by the applier (DESIGN 3): the target holds what the
// source held at the marker, so the action runs now. While it runs (up to the
// marker's timeout) nothing after the marker is applied; the outcome goes to
// tasks/<set>/<task id>.json. A failing action never fails the message: data
// after the marker is applied either way.

import { taskResultKey } from "../../contract/layout.ts";
import { collisionTaskId, resultOfMarker } from "../../contract/task-owner.ts";
import { isFinished, TaskResultSchema, type TaskAction, type TaskFields, type TaskResult, type TaskStatus } from "../../contract/tasks.ts";
import type { ChangingWhileRead, NotReplicatedAtMarker, SnapshotSummary } from "../../contract/tasks.ts";
import { ActionFailedError, ActionSkippedError, EVENT_TYPES, type ActionRunner, type EventSink, type TaskContext } from "../tasks/actions.ts";
import type { TargetStore } from "../store/store.ts";
import type { MarkerDigest } from "../../contract/wire.ts";
import { snapshotProblem } from "../tasks/snapshot-checks.ts";
import { snapshotCheckMetricsLine } from "./metrics.ts";

export interface TaskSettings {
  /** The target's switch: when off, markers are recorded as skipped and nothing runs. @default true */
  readonly enabled?: boolean;
  /** Runners of the actions other than `snapshot` (which the applier takes itself); a missing one skips. */
  readonly actions?: Partial<Record<Exclude<TaskAction, "snapshot">, ActionRunner>>;
  /** Where a "task finished" event goes for every marker. */
  readonly events?: EventSink;
  /** Snapshots older than this many days are deleted when a new one is taken. */
  readonly retentionDays?: number;
  /** Namespace of the metric a failed snapshot check puts (embedded metric format). @default "Tidemark" */
  readonly metricsNamespace?: string;
}

export interface Marker {
  readonly set: string;
  readonly id: string;
  readonly seq: number | null;
  readonly fields: TaskFields;
  /** What the source held at the barrier, when the agent journaled the marker. */
  readonly digest?: MarkerDigest;
  /** Files that kept changing while the barrier read them (the snapshot records them). */
  readonly changingWhileRead?: ChangingWhileRead;
  /** Entries the set held at the barrier and does not replicate (the snapshot records them: it is incomplete). */
  readonly notReplicated?: NotReplicatedAtMarker;
  /** The journal generation of `seq` (in-stream markers): names the marker in its result. */
  readonly generation?: string;
  /** The id the marker was sent with, when it runs under another (its own held another marker's result). */
  readonly requestedId?: string;
}

export interface MarkerDeps {
  readonly store: TargetStore;
  readonly settings: TaskSettings;
  readonly now: () => Date;
  readonly log: (line: string) => void;
  /** Takes and checks the snapshot of the set as it is now (the applier raises the set's snapshot generation once it is written); a check that goes on across invocations calls saveProgress. */
  readonly snapshot: (marker: Marker, signal: AbortSignal, saveProgress: (outputs: Record<string, unknown>) => Promise<void>) => Promise<SnapshotSummary>;
  /** Milliseconds left in this invocation (Lambda's deadline); unbounded when absent. */
  readonly remainingMs?: () => number;
}

/** A marker whose action ran this many times without finishing (the applier died each time) is not run again. */
const MAX_ATTEMPTS = 2;
/** Kept free of the invocation's deadline: writing the result and the checkpoint after a timed-out action. */
const DEADLINE_MARGIN_MS = 10_000;
/** How long a timed-out action gets to notice its abort before the applier moves on. */
const ABORT_GRACE_MS = 5_000;

class ActionTimeoutError extends Error {
  override name = "ActionTimeoutError";
}

/**
 * A resumable action ran out of invocation: its progress is saved and the
 * marker's message is retried, so the action goes on in the next invocation
 * while nothing after the marker is applied.
 */
export class MarkerContinuesError extends Error {
  override name = "MarkerContinuesError";
}

/** Actions that go on across invocations until they finish (they hold the set meanwhile; the marker's timeout does not end them): a snapshot's verification too. */
function resumable(action: TaskAction): boolean {
  return action === "ebs-snapshot" || action === "snapshot";
}

/**
 * Where the marker's result goes: under its id, unless that holds another marker's result (an id taken by a
 * marker sent straight to the queue, or taken before it by an agent's): then under an id of its own
 * (collisionTaskId), so neither runs in the other's name nor is taken for it.
 */
async function markerSlot(marker: Marker, read: (key: string) => Promise<TaskResult | undefined>): Promise<{ marker: Marker; key: string; previous: TaskResult | undefined }> {
  const key = taskResultKey(marker.set, marker.id);
  const previous = await read(key);
  if (!previous || resultOfMarker(previous, marker)) return { marker, key, previous };
  const id = collisionTaskId(marker.id, marker);
  const own = taskResultKey(marker.set, id);
  return { marker: { ...marker, id, requestedId: marker.id }, key: own, previous: await read(own) };
}

async function readResult(store: TargetStore, key: string): Promise<TaskResult | undefined> {
  const body = (await store.get(key))?.body;
  if (!body) return undefined;
  const parsed = TaskResultSchema.safeParse(JSON.parse(body.toString("utf8")));
  return parsed.success ? parsed.data : undefined;
}

/** Resolves when signal aborts, with the abort's reason as a rejection. */
function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason), { once: true }));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms).unref());

export interface MarkerOutcome {
  readonly result: TaskResult;
  /** The snapshot the action took, when it took one and the task succeeded. */
  readonly snapshot?: SnapshotSummary;
  /** The snapshot the action took, whatever became of the task (a failed digest or content check included). */
  readonly taken?: SnapshotSummary;
  /** For a marker that does not hold the stream (timeout 0): its action, still running. */
  readonly background?: Promise<unknown>;
}

function snapshotOutputs(snapshot: SnapshotSummary): Record<string, unknown> {
  const checks = {
    ...(snapshot.digest ? { digest: snapshot.digest.status } : {}),
    ...(snapshot.verification ? { verification: snapshot.verification.status } : {}),
    ...(snapshot.changingWhileRead ? { changingWhileRead: snapshot.changingWhileRead.count } : {}),
    ...(snapshot.notReplicated ? { notReplicated: snapshot.notReplicated.count } : {}),
  };
  if (snapshot.volume) return { snapshotId: snapshot.id, blocks: snapshot.volume.blocks, bytes: snapshot.bytes, ...checks };
  return { snapshotId: snapshot.id, files: snapshot.files, bytes: snapshot.bytes, ...checks };
}

/**
 * Whether the marker holds the set's stream while its action runs: a snapshot (the state at the marker, taken before
 * anything after it is applied), an action that goes on across invocations, or one given a timeout. Otherwise (timeout
 * 0) it runs beside the stream, which goes on at once.
 */
export function holdsStream(fields: TaskFields): boolean {
  return resumable(fields.action) || fields.timeoutSeconds > 0 || fields.action === "snapshot" || fields.snapshot === true;
}

export async function runMarker(deps: MarkerDeps, sent: Marker, skipReason?: string): Promise<MarkerOutcome> {
  const { store, settings, now } = deps;
  const { fields } = sent;
  const { marker, key, previous } = await markerSlot(sent, (k) => readResult(store, k));
  // A redelivered marker that already ran is not run again.
  if (previous && isFinished(previous)) return { result: previous };

  const result: TaskResult = {
    id: marker.id,
    set: marker.set,
    seq: marker.seq,
    action: fields.action,
    ...(fields.label !== undefined ? { label: fields.label } : {}),
    status: "running",
    timeoutSeconds: fields.timeoutSeconds,
    ...(fields.insertedAt !== undefined ? { insertedAt: fields.insertedAt } : {}),
    reachedAt: previous?.reachedAt ?? now().toISOString(),
    attempts: (previous?.attempts ?? 0) + 1,
    outputs: previous?.outputs ?? {},
    ...(previous?.progressAttempt !== undefined ? { progressAttempt: previous.progressAttempt } : {}),
    ...(marker.generation !== undefined ? { generation: marker.generation } : {}),
    ...(marker.requestedId !== undefined ? { requestedId: marker.requestedId } : {}),
  };
  const write = async () => {
    await store.put(key, Buffer.from(JSON.stringify(result, null, 2)), {});
  };
  const finish = async (status: TaskStatus, error?: string): Promise<TaskResult> => {
    result.status = status;
    result.finishedAt = now().toISOString();
    if (error !== undefined) result.error = error;
    await write();
    deps.log(JSON.stringify({ level: status === "succeeded" ? "info" : "warn", msg: "task finished", set: marker.set, task: marker.id, action: fields.action, status, error }));
    if (settings.events) {
      await settings.events.put(EVENT_TYPES.finished, { ...result }).catch((e: unknown) => {
        deps.log(JSON.stringify({ level: "warn", msg: "task finished event not sent", set: marker.set, task: marker.id, error: String(e) }));
      });
    }
    return result;
  };

  if (settings.enabled === false) {
    return { result: await finish("skipped", "task markers are disabled on this target (stack setting tidemark:tasksEnabled=false)") };
  }
  if (skipReason !== undefined) return { result: await finish("skipped", skipReason) };
  // Attempts that saved progress (a resumable upload) moved the action on: only the ones since count.
  if (result.attempts - (result.progressAttempt ?? 0) > MAX_ATTEMPTS) {
    return {
      result: await finish("failed", `the applier stopped ${MAX_ATTEMPTS} times while this action ran (is the applier's timeout shorter than the action?); not run again`),
    };
  }
  await write();

  let snapshot: SnapshotSummary | undefined;
  const context = (): TaskContext => ({
    set: marker.set,
    taskId: marker.id,
    seq: marker.seq,
    action: fields.action,
    ...(fields.label !== undefined ? { label: fields.label } : {}),
    ...(fields.insertedAt !== undefined ? { insertedAt: fields.insertedAt } : {}),
    reachedAt: result.reachedAt,
    ...(snapshot ? { snapshotId: snapshot.id } : {}),
  });
  const saveProgress = async (outputs: Record<string, unknown>) => {
    result.outputs = outputs;
    result.progressAttempt = result.attempts;
    await write();
  };
  const work = async (signal: AbortSignal): Promise<Record<string, unknown>> => {
    // An EBS snapshot is cut from the block snapshot taken here, at the marker.
    if (fields.action === "snapshot" || fields.action === "ebs-snapshot" || fields.snapshot) {
      const taken = await deps.snapshot(marker, signal, saveProgress);
      snapshot = taken;
      // A snapshot that differs from the source or lost content is no recovery point: nothing is built on it.
      const problem = snapshotProblem(taken);
      if (problem !== undefined) {
        result.outputs = snapshotOutputs(taken);
        deps.log(snapshotCheckMetricsLine({ set: marker.set, snapshot: taken, timestamp: now().getTime(), ...(settings.metricsNamespace ? { namespace: settings.metricsNamespace } : {}) }));
        throw new ActionFailedError(problem);
      }
    }
    if (fields.action === "snapshot") return snapshot ? snapshotOutputs(snapshot) : {};
    const runner = settings.actions?.[fields.action];
    if (!runner) throw new ActionSkippedError(`the ${fields.action} action is not available on this target`);
    const outputs = await runner.run({ context: context(), fields, signal, saveProgress, ...(previous ? { previous: previous.outputs } : {}) });
    return snapshot ? { snapshotId: snapshot.id, ...outputs } : outputs;
  };

  const continues = resumable(fields.action);
  const holds = holdsStream(fields);
  const remaining = deps.remainingMs ? Math.max(0, deps.remainingMs() - DEADLINE_MARGIN_MS) : Number.POSITIVE_INFINITY;
  const limitMs = Math.min(fields.timeoutSeconds > 0 && !continues ? fields.timeoutSeconds * 1000 : Number.POSITIVE_INFINITY, remaining);

  /** Runs the action within the limit; what the action did decides the status, a failure to write the result is thrown (the message is retried). */
  const execute = async (): Promise<MarkerOutcome> => {
    const controller = new AbortController();
    const timer = Number.isFinite(limitMs)
      ? setTimeout(() => controller.abort(new ActionTimeoutError(`the action did not finish within ${Math.round(limitMs / 1000)} s`)), limitMs)
      : undefined;
    const running = work(controller.signal);
    let status: TaskStatus = "succeeded";
    let error: string | undefined;
    try {
      result.outputs = await Promise.race([running, aborted(controller.signal)]);
    } catch (thrown) {
      if (controller.signal.aborted && continues) {
        // Progress is saved: the message is retried and the action goes on in the next invocation.
        await running.catch(() => undefined);
        await write();
        throw new MarkerContinuesError(`the ${fields.action} action of task ${marker.id} goes on in the next invocation (the invocation's deadline is near)`);
      }
      if (controller.signal.aborted) {
        // An action that finishes as it is told to stop did finish: keep its outcome.
        const late = await Promise.race([running.then((outputs) => ({ outputs }), () => undefined), sleep(ABORT_GRACE_MS).then(() => undefined)]);
        if (late) result.outputs = late.outputs;
        else {
          status = "timed-out";
          const reason: unknown = controller.signal.reason;
          error = `${reason instanceof Error ? reason.message : String(reason)}; changes after the marker were applied without waiting for it`;
        }
      } else {
        status = thrown instanceof ActionSkippedError ? "skipped" : "failed";
        error = thrown instanceof Error ? thrown.message : String(thrown);
      }
    } finally {
      clearTimeout(timer);
    }
    return { result: await finish(status, error), ...(snapshot ? { taken: snapshot } : {}), ...(snapshot && status === "succeeded" ? { snapshot } : {}) };
  };

  if (holds) return execute();
  const background = execute().catch((error: unknown) => {
    deps.log(JSON.stringify({ level: "error", msg: "task result not written", set: marker.set, task: marker.id, error: String(error) }));
  });
  return { result, background };
}
