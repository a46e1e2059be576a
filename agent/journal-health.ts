// What the agent does when its journal fails under it. A full disk: say so
// once, with the real error, stop capturing and sending (every attempt would
// fail the same way, and spin), probe with growing pauses, and once a write
// commits again, resume with a catch-up scan of every set: nothing captured
// meanwhile reached the index, so the scan finds all of it. A corrupt
// journal: hand it to the agent's owner, who stops the process.

import { freeBytes, isCorrupt, isDiskFull, journalFault, JournalCorruptError } from "./journal-faults.ts";
import type { Journal } from "./journal.ts";
import type { Logger } from "./log.ts";
import type { AgentProblem } from "./problem-file.ts";

export interface JournalHealthOptions {
  readonly journal: Journal;
  readonly log: Logger;
  /** Probes on a timer while the disk is full; off in tests, which call probe(). */
  readonly monitorEnabled: boolean;
  /** Once a write commits again: catch-up scans. */
  readonly onResumed: () => Promise<void>;
  /** The journal is corrupt: the agent cannot go on. */
  readonly onCorrupt: (error: JournalCorruptError) => void;
  /** The current problem (null once resolved), for `tidemark status`. */
  readonly onProblem?: (problem: AgentProblem | null) => void;
  /** @default 1 s, doubling to 30 s */
  readonly firstProbeMs?: number;
  readonly maxProbeMs?: number;
  /**
   * Free space needed before journaling resumes: a small write may fit in the
   * WAL's old pages on a disk still full, and a catch-up scan would fail again. @default 4 MiB
   */
  readonly resumeFreeBytes?: number;
}

/** A disk that fills again this soon after journaling resumed keeps its slow probing pace. */
const REFILL_WINDOW_MS = 60_000;

export class JournalHealth {
  readonly #options: JournalHealthOptions;
  #problem: AgentProblem | null = null;
  #timer: NodeJS.Timeout | undefined;
  #nextProbeMs = 1_000;
  #corrupt: JournalCorruptError | undefined;
  #resumedAt = Number.NEGATIVE_INFINITY;

  constructor(options: JournalHealthOptions) {
    this.#options = options;
  }

  /** The disk holding the journal is full: nothing is captured or sent until a probe succeeds. */
  get full(): boolean {
    return this.#problem !== null;
  }

  get problem(): AgentProblem | null {
    return this.#problem;
  }

  /** Takes a failure of journaling: true when it was a full disk or a corrupt journal (then handled), false for anything else. */
  handle(error: unknown): boolean {
    if (isCorrupt(error)) {
      const corrupt = journalFault(error, this.#options.journal.path);
      if (this.#corrupt === undefined && corrupt instanceof JournalCorruptError) {
        this.#corrupt = corrupt;
        this.#options.log.error(corrupt.message);
        this.#options.onCorrupt(corrupt);
      }
      return true;
    }
    if (!isDiskFull(error)) return false;
    if (this.#problem !== null) return true;
    const named = journalFault(error, this.#options.journal.path);
    const message = named instanceof Error ? named.message : String(named);
    this.#problem = { problem: `${message}; journaling paused, resumes by itself when there is space`, since: new Date().toISOString() };
    this.#options.log.error("disk full: journaling paused until there is space, then a catch-up scan journals what changed", { error: message });
    this.#report(this.#problem);
    if (Date.now() - this.#resumedAt > REFILL_WINDOW_MS) this.#nextProbeMs = this.#options.firstProbeMs ?? 1_000;
    this.#schedule();
    return true;
  }

  #report(problem: AgentProblem | null): void {
    try {
      this.#options.onProblem?.(problem);
    } catch (error) {
      this.#options.log.warn("could not record the agent's problem for status", { error: String(error) });
    }
  }

  #schedule(): void {
    if (!this.#options.monitorEnabled || this.#problem === null) return;
    this.#timer = setTimeout(() => {
      this.probe().catch((error: unknown) => this.#options.log.error("catch-up after a full disk failed", { error: String(error) }));
    }, this.#nextProbeMs);
    this.#timer.unref();
    this.#nextProbeMs = Math.min(this.#nextProbeMs * 2, this.#options.maxProbeMs ?? 30_000);
  }

  /** Tries a write: when it commits, journaling resumes with a catch-up scan. True when journaling works. */
  async probe(): Promise<boolean> {
    if (this.#problem === null) return true;
    const free = freeBytes(this.#options.journal.path);
    if (free !== undefined && free < (this.#options.resumeFreeBytes ?? 4 * 1024 * 1024)) {
      this.#schedule();
      return false;
    }
    try {
      this.#options.journal.checkWritable();
    } catch (error) {
      if (!isDiskFull(error)) this.handle(error);
      this.#schedule();
      return false;
    }
    this.#problem = null;
    this.#resumedAt = Date.now();
    clearTimeout(this.#timer);
    this.#report(null);
    this.#options.log.info("journal writable again; catching up with a scan of every set");
    await this.#options.onResumed();
    return true;
  }

  stop(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#problem = null;
  }
}
