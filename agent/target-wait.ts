// Waiting for the target to reach a journaled record (a marker, a
// verification, a prune). No wait hangs on a seq mismatch (DESIGN 8): the
// target's seq counts only in the record's own journal generation, a target
// that left that generation or passed the record without its result ends the
// wait at once, and a target that stops moving ends it after a bound.

import type { SetStatus } from "../contract/layout.ts";
import { decideWhileHeld, HeldWaitError, type HeldBy, type HeldDecision, type WhileHeld } from "./held-wait.ts";
import { OperationTimeoutError, type Progress } from "./operations.ts";

/** The target will never produce what the wait is for. */
export class TargetMismatchError extends Error {
  override name = "TargetMismatchError";
}

export interface AwaitedRecord {
  readonly set: string;
  /** How messages name it, e.g. "task 0192… (seq 12)". */
  readonly what: string;
  readonly seq?: number;
  /** The journal generation the record was journaled in; without it, seqs are compared as they are. */
  readonly generation?: string;
}

/** The record will not reach the target: nothing runs that would send it. */
export class RecordNotSentError extends Error {
  override name = "RecordNotSentError";
}

/** Where the target stands with respect to a record of a journal generation. */
export type TargetPosition =
  | { kind: "coming"; appliedSeq: number }
  | { kind: "passed" }
  | { kind: "never"; reason: string };

/** What the target's status says, in one line, for error messages. */
export function describeTarget(status: SetStatus): string {
  const reason = status.reason ? `: ${status.reason}` : "";
  return `the target applied seq ${status.lastSeq} of generation ${status.generation ?? "(none)"}, ${status.state}${reason}`;
}

export function targetPosition(status: SetStatus, record: AwaitedRecord): TargetPosition {
  if (record.seq === undefined) return { kind: "coming", appliedSeq: 0 };
  const sameGeneration = record.generation === undefined || status.generation === record.generation;
  if (sameGeneration) return status.lastSeq >= record.seq ? { kind: "passed" } : { kind: "coming", appliedSeq: status.lastSeq };
  if (status.generations?.some((g) => g.id === record.generation)) {
    return { kind: "never", reason: `the target left journal generation ${record.generation} for ${status.generation ?? "(none)"}` };
  }
  // The target has not reached the record's generation yet: its seqs say nothing of this record.
  return { kind: "coming", appliedSeq: 0 };
}

export interface TargetWaitOptions {
  /** Give up after this long, whatever the target does. @default no limit */
  readonly timeoutMs?: number;
  /** Give up when the target's status has not changed for this long while the record is not reached. @default 10 minutes */
  readonly stallMs?: number;
  readonly pollMs?: number;
  /** Asked once the target seems stalled: true when a marker's action holds the set's stream, which restarts the stall clock. */
  readonly busy?: () => Promise<boolean>;
  /**
   * Who holds this host's sends of the set (held-wait.ts), undefined while they go, and what the wait does then:
   * an operator's fails at once, the agent's own (a recovery) waits with its stall clock and deadline stopped.
   */
  readonly held?: { readonly by: () => Promise<HeldBy | undefined>; readonly policy: WhileHeld };
  /** What this host knows of why the target does not move (its sends failing): said when the wait gives up. */
  readonly stuck?: () => string | undefined;
  /** Why the record will not be sent (no agent runs to send it), undefined while it may be; asked while the target has not reached it. */
  readonly unsent?: () => Promise<string | undefined>;
  readonly onProgress?: (progress: Progress) => void;
  readonly signal?: AbortSignal;
}

/** What a read of the awaited result found: done, reached but still running (an action), or nothing yet. */
export type Found<T> = { done: T } | { running: true } | undefined;

const DEFAULT_STALL_MS = 10 * 60_000;

function minutes(ms: number): string {
  return ms >= 60_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
}

function stuckNote(options: TargetWaitOptions): string {
  const stuck = options.stuck?.();
  return stuck ? `; ${stuck}` : "";
}

/**
 * Polls `read` until it finds the record's result. Fails with
 * TargetMismatchError when the target will never produce it, and with
 * OperationTimeoutError (naming what the target says) when the target stops
 * moving for `stallMs` or `timeoutMs` passes.
 */
export async function waitOnTarget<T>(
  record: AwaitedRecord,
  read: () => Promise<Found<T>>,
  readStatus: () => Promise<SetStatus>,
  options: TargetWaitOptions = {},
): Promise<T> {
  const started = Date.now();
  const stallMs = options.stallMs ?? DEFAULT_STALL_MS;
  let deadline = options.timeoutMs !== undefined ? started + options.timeoutMs : Number.POSITIVE_INFINITY;
  let stamp: string | undefined;
  let movedAt = started;
  let polledAt = started;
  for (;;) {
    const found = await read();
    if (found && "done" in found) return found.done;
    let reached = found !== undefined;
    let says: string;
    let now: string;
    try {
      const status = await readStatus();
      const position = targetPosition(status, record);
      if (position.kind === "never") throw new TargetMismatchError(`${record.what} of set "${record.set}" will never be reached: ${position.reason}; see \`tidemark status\``);
      if (position.kind === "passed") reached = true;
      if (position.kind === "passed" && !found) {
        // Read again: the result may have been written between the two reads.
        const again = await read();
        if (again && "done" in again) return again.done;
        if (!again) {
          throw new TargetMismatchError(
            `the target passed ${record.what} of set "${record.set}" without its result (${describeTarget(status)}); it was superseded by a resync or the set went out of sync before it`,
          );
        }
      }
      if (record.seq !== undefined) {
        const appliedSeq = position.kind === "coming" ? Math.min(position.appliedSeq, record.seq) : record.seq;
        options.onProgress?.({ phase: "wait", seq: record.seq, appliedSeq, ...(found ? { running: true } : {}) });
      }
      says = describeTarget(status);
      now = `${status.generation}:${status.lastSeq}:${status.state}:${status.updatedAt}`;
    } catch (error) {
      if (error instanceof TargetMismatchError) throw error;
      says = `the target's status is not readable (${(error as Error).message})`;
      now = "unreadable";
    }
    // A running action holds the stream on purpose: only a target that neither moves nor works is stalled.
    if (now !== stamp || found) {
      stamp = now;
      movedAt = Date.now();
    }
    const heldBy = options.held && !reached ? await options.held.by().catch(() => undefined) : undefined;
    const decision: HeldDecision = options.held ? decideWhileHeld(heldBy, reached, options.held.policy) : { kind: "go" };
    if (decision.kind === "fail") throw new HeldWaitError(record.what, decision.held);
    const unsent = options.unsent && !reached ? await options.unsent() : undefined;
    if (unsent !== undefined) throw new RecordNotSentError(`${record.what} of set "${record.set}" will not be reached: ${unsent}`);
    if (decision.kind === "pause") {
      // The target cannot move while this host sends nothing: the time held counts toward neither limit.
      movedAt = Date.now();
      deadline += Date.now() - polledAt;
    }
    polledAt = Date.now();
    if (Date.now() - movedAt > stallMs && (await options.busy?.().catch(() => false))) movedAt = Date.now();
    if (Date.now() - movedAt > stallMs) {
      throw new OperationTimeoutError(`gave up waiting for ${record.what} of set "${record.set}": the target has not moved for ${minutes(stallMs)} (${says})${stuckNote(options)}; see \`tidemark status\``);
    }
    if (Date.now() > deadline) {
      const where = found ? "it is still running" : "the target has not reached it";
      throw new OperationTimeoutError(`${record.what} of set "${record.set}" is not done: ${where} (${says})${stuckNote(options)}; see \`tidemark status\``);
    }
    options.signal?.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
  }
}
