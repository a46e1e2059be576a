// Large files that keep changing are coalesced (issue 15): while a put of a
// large file is journaled and not yet sent, a new capture of it waits, and is
// taken once that put is sent. So the journal holds one unsent version of such
// a file, not a whole copy per change, and each capture reads the file once
// per send rather than once per write. A marker's barrier scan does not wait:
// the marker must see every file as it was at the barrier.

import type { Change } from "./journal.ts";

export class BusyFiles {
  readonly #threshold: number;
  /** Path -> seq of its latest large put, until it is sent. */
  readonly #unsent = new Map<string, number>();
  /** Paths whose capture waits for their put to be sent. */
  readonly #waiting = new Set<string>();

  /** Files of at least thresholdBytes are coalesced. */
  constructor(thresholdBytes: number) {
    this.#threshold = thresholdBytes;
  }

  /** Notes what was journaled: a put of a large file holds later captures of its path until it is sent. */
  journaled(changes: readonly Change[], seqs: readonly number[]): void {
    changes.forEach((change, i) => {
      const seq = seqs[i];
      if (seq !== undefined && change.op === "put" && change.size >= this.#threshold) this.#unsent.set(change.path, seq);
    });
  }

  /** True when path's large put is not sent yet (sentSeq is the last seq sent): its capture waits, and is remembered. */
  defer(path: string, sentSeq: number): boolean {
    const seq = this.#unsent.get(path);
    if (seq === undefined) return false;
    if (seq <= sentSeq) {
      this.#unsent.delete(path);
      return false;
    }
    this.#waiting.add(path);
    return true;
  }

  /** Paths that waited and whose put has been sent since: to capture now. */
  ready(sentSeq: number): string[] {
    const ready: string[] = [];
    for (const path of this.#waiting) {
      const seq = this.#unsent.get(path);
      if (seq !== undefined && seq > sentSeq) continue;
      this.#waiting.delete(path);
      this.#unsent.delete(path);
      ready.push(path);
    }
    return ready;
  }
}
