// What the parts of one set's work share (set-capture, set-operations,
// set-recovery, set-sender): the set, the journal, the log and the journal's
// health, one lane that keeps the set's scans, captures and resyncs from
// interleaving, and a way to wake the set's sender.

import type { Journal } from "./journal.ts";
import type { JournalHealth } from "./journal-health.ts";
import type { Logger } from "./log.ts";
import { RootHeldError, type RootHold } from "./set-roots.ts";
import type { SetSpec } from "./set-spec.ts";

export interface SetContext {
  readonly spec: SetSpec;
  readonly journal: Journal;
  readonly log: Logger;
  /** A full disk pauses journaling; a corrupt journal is fatal. */
  readonly health: JournalHealth;
  /** Runs work after everything queued before it on this set. */
  exclusive<T>(work: () => Promise<T>): Promise<T>;
  /** Something was journaled: the set's sender looks at once instead of at its next idle wake-up. */
  wake(): void;
  /**
   * Looks at the set's root (root-watch.ts; within its time limit): its hold, when the root is bad or does not answer.
   * The look answering is one begun after this call (or one under way that found a hold): what was read before it
   * may be journaled.
   */
  checkRoot(): Promise<RootHold | undefined>;
}

/** One set's queue of journal-changing work: each piece runs after everything queued before it, failed or not. */
export class SetLane {
  #chain: Promise<unknown> = Promise.resolve();

  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.#chain.then(work, work);
    this.#chain = run.catch(() => undefined);
    return run;
  }
}

/**
 * Looks at the set's root right before something read from it is journaled (SetContext.checkRoot) and throws
 * RootHeldError when the look found a hold or one is recorded; `what` says what is refused.
 */
export async function assertRootAnswers(context: Pick<SetContext, "checkRoot" | "journal" | "spec">, what?: string): Promise<void> {
  const hold = await context.checkRoot();
  if (hold) throw new RootHeldError(hold, what);
  context.journal.assertRootGood(context.spec.name, what !== undefined ? { what } : {});
}
