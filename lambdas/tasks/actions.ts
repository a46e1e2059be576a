// The task actions' seam: what the applier hands an action when it reaches a
// marker, and what it gets back. Each action is a small runner around one AWS
// API; the applier owns ordering, timeouts and results, the runners only act.

import type { TaskAction, TaskFields } from "../../contract/tasks.ts";

/** The marker's context: what `invoke` payloads and events carry. */
export interface TaskContext {
  readonly set: string;
  readonly taskId: string;
  /** The marker's seq in the set's stream; null for a marker sent straight to the queue. */
  readonly seq: number | null;
  readonly action: TaskAction;
  readonly label?: string;
  readonly insertedAt?: string;
  /** When the applier reached the marker. */
  readonly reachedAt: string;
  /** The snapshot taken at this marker, when one was. */
  readonly snapshotId?: string;
}

export interface ActionRequest {
  readonly context: TaskContext;
  readonly fields: TaskFields;
  /** Aborted when the marker's timeout passes: the runner stops waiting and rejects. */
  readonly signal: AbortSignal;
  /** What the previous attempt saved with saveProgress (a resumable action continues from it). */
  readonly previous?: Record<string, unknown>;
  /** Saves outputs in the running task's result: an attempt that ends without finishing (the invocation's deadline, a killed Lambda) hands them to the next. */
  readonly saveProgress: (outputs: Record<string, unknown>) => Promise<void>;
}

/**
 * One kind of marker action. `run` resolves with the outputs the task result
 * keeps; it rejects with ActionSkippedError when the action cannot run here
 * (not configured, not available locally), with any other error when it failed.
 */
export interface ActionRunner {
  run(request: ActionRequest): Promise<Record<string, unknown>>;
}

/** The action did not run, for a reason that is not a failure of the action (the result says skipped). */
export class ActionSkippedError extends Error {
  override name = "ActionSkippedError";
}

/** The action ran and failed (the result says failed, with this message). */
export class ActionFailedError extends Error {
  override name = "ActionFailedError";
}

/** A runner that always skips, saying why: an action this target cannot run. */
export function unavailable(reason: string): ActionRunner {
  return {
    async run() {
      throw new ActionSkippedError(reason);
    },
  };
}

/** Where events go: EventBridge on AWS, a file in the local cloud. */
export interface EventSink {
  /** Publishes one event; resolves with its id. */
  put(detailType: string, detail: Record<string, unknown>, signal?: AbortSignal): Promise<string>;
}

/** EventBridge `source` of every tidemark event. */
export const EVENT_SOURCE = "tidemark";

export const EVENT_TYPES = {
  /** ONRECEIVE: the queue accepted a message holding a marker. */
  received: "Tidemark Task Received",
  /** The applier finished a marker (any status). */
  finished: "Tidemark Task Finished",
  /** An `event` marker's own event. */
  marker: "Tidemark Task Marker",
} as const;

/** The `event` action: one event with the marker's context. */
export class EventAction implements ActionRunner {
  readonly #sink: EventSink;
  constructor(sink: EventSink) {
    this.#sink = sink;
  }
  async run({ context, signal }: ActionRequest): Promise<Record<string, unknown>> {
    return { eventId: await this.#sink.put(EVENT_TYPES.marker, { ...context }, signal) };
  }
}
