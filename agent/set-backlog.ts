// The journal limit of one set (AgentOptions.journalLimitBytes): at the limit
// the set stops journaling and is out of sync; once the backlog drains below
// half, a catch-up scan journals what changed meanwhile.

import type { SetContext } from "./set-context.ts";

/** Warn when the backlog passes this fraction of the limit. */
const JOURNAL_WARN_FRACTION = 0.8;

export class Backlog {
  readonly #context: SetContext;
  readonly #limit: number;
  #warnedNearLimit = false;

  constructor(context: SetContext, limitBytes: number) {
    this.#context = context;
    this.#limit = limitBytes;
  }

  /**
   * True when the set's backlog (with what a scan holds, not journaled yet) is at the journal limit, or would pass
   * it with a change of nextBytes (and marks it so); warns as it nears the limit. A change larger than the limit is
   * journaled once nothing else is held: it goes alone, else it could never be sent.
   */
  full(unjournaledBytes = 0, nextBytes = 0): boolean {
    const { journal, spec, log } = this.#context;
    const { backlogBytes, overflowed } = journal.sets.counters(spec.name);
    if (overflowed) return true;
    const held = backlogBytes + unjournaledBytes;
    if (held >= this.#limit || (held > 0 && held + nextBytes > this.#limit)) {
      journal.sets.setOverflowed(spec.name, true);
      log.error("journal limit reached: the set is out of sync until the backlog drains, then a catch-up scan journals what changed", {
        set: spec.name,
        backlogBytes,
        limit: this.#limit,
      });
      return true;
    }
    const near = backlogBytes >= this.#limit * JOURNAL_WARN_FRACTION;
    if (near && !this.#warnedNearLimit) log.warn("journal nearly full", { set: spec.name, backlogBytes, limit: this.#limit });
    this.#warnedNearLimit = near;
    return false;
  }

  /**
   * After a send: true once a set that overflowed has drained below half the limit (the caller scans). The set stays
   * marked until that scan has begun (catchUpBegins): status says the journal is full, then that a scan runs.
   */
  drained(): boolean {
    const { backlogBytes, overflowed } = this.#context.journal.sets.counters(this.#context.spec.name);
    return overflowed && backlogBytes <= this.#limit / 2;
  }

  /**
   * Called by a scan within the limit in the transaction that names it (held-files.ts namedScan): a set that overflowed
   * and has drained is no longer marked, since this scan journals what changed meanwhile.
   */
  catchUpBegins(): void {
    const { journal, spec, log } = this.#context;
    if (!this.drained()) return;
    journal.sets.setOverflowed(spec.name, false);
    log.info("journal drained; catching up with a scan", { set: spec.name });
  }
}
