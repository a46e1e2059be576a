// One history segment per set per batch instead of one per message: the
// entries of a set's messages in one invocation wait in its recorder and go
// into a single segment when the batch ends, before the handler answers (SQS
// deletes a message only then). Nothing acknowledges or checkpoints a record
// before its history is durable: the segment carries the checkpoint of the
// messages it holds, every status write of the set writes the waiting
// entries first (applier.ts), and staged payloads are removed only after.
// A crash before the segment is written loses nothing: no message of the
// batch was deleted, so all come back and are applied again, which changes
// nothing the checkpoint counts twice. A message that fails part way is
// dropped from the segment; the messages before it keep theirs. A message
// with renames or deltas is written at its end instead (applier.ts): those
// are the records that cannot always be applied twice (a later message may
// have replaced the rename's target, or the delta's base).

import type { SetStatus } from "../../contract/layout.ts";
import type { HistoryRecorder } from "../history/recorder.ts";

interface Waiting {
  /** The status object the set's messages of the batch share (batch-memory.ts). */
  readonly status: SetStatus;
  readonly recorder: HistoryRecorder;
  /** What may run only once the segment is durable: removing the staged payloads its records were applied from. */
  readonly after: (() => Promise<void>)[];
  /** The batch let go of the set (a message failed or was rejected): only ended messages are written, and not the status. */
  abandoned: boolean;
}

export class BatchSegments {
  /** Every batch's waiting recorders by the status object they record for (a status object belongs to one batch). */
  static readonly #byStatus = new WeakMap<SetStatus, Waiting>();
  readonly #waiting: Waiting[] = [];

  /**
   * The recorder whose entries wait for a batch's segment and that this
   * status object counts, until the batch ends: every write of the status
   * writes them first (the checkpoint never covers a record whose history is
   * not durable).
   */
  static waitingFor(status: SetStatus): HistoryRecorder | undefined {
    return BatchSegments.#byStatus.get(status)?.recorder;
  }

  /** The recorder the batch's earlier messages of the set opened for this status object, if it still records. */
  recorder(status: SetStatus): HistoryRecorder | undefined {
    return this.#waiting.find((w) => w.status === status && !w.abandoned)?.recorder;
  }

  /** A recorder opened for the set's status: its entries wait for the end of the batch. */
  opened(status: SetStatus, recorder: HistoryRecorder): void {
    const waiting = { status, recorder, after: [], abandoned: false };
    this.#waiting.push(waiting);
    BatchSegments.#byStatus.set(status, waiting);
  }

  /** Work to run once the set's segment is durable. */
  after(status: SetStatus, work: () => Promise<void>): void {
    const waiting = this.#waiting.find((w) => w.status === status && !w.abandoned);
    if (!waiting) throw new Error(`internal: no history segment of set "${status.set}" waits in this batch`);
    waiting.after.push(work);
  }

  /** The batch lets go of the set: the entries of the message under way go, those of ended ones are still written. */
  abandon(set: string): void {
    for (const waiting of this.#waiting) {
      if (waiting.status.set !== set || waiting.abandoned) continue;
      waiting.abandoned = true;
      waiting.recorder.abandon();
    }
  }

  /**
   * Writes each set's segment (sets at once, a set's in order); then, for a
   * set the batch still holds, `settle` (its status write when due) and the
   * work that waited. Resolves with the sets whose writes failed, and why:
   * every message of theirs in the batch must come back.
   */
  async finish(settle: (status: SetStatus, recorder: HistoryRecorder) => Promise<void>): Promise<Map<string, unknown>> {
    const bySet = new Map<string, Waiting[]>();
    for (const waiting of this.#waiting.splice(0)) {
      bySet.set(waiting.status.set, [...(bySet.get(waiting.status.set) ?? []), waiting]);
      // Flushed below, before its status is written: nothing waits for the batch any more.
      BatchSegments.#byStatus.delete(waiting.status);
    }
    const failed = new Map<string, unknown>();
    await Promise.all(
      [...bySet].map(async ([set, list]) => {
        try {
          for (const waiting of list) {
            await waiting.recorder.flush();
            // Once the segment is durable, the status write and the removal of what it covers need not wait for each other.
            await Promise.all([waiting.abandoned ? undefined : settle(waiting.status, waiting.recorder), ...waiting.after.map((work) => work())]);
          }
        } catch (error) {
          failed.set(set, error);
        }
      }),
    );
    return failed;
  }
}
