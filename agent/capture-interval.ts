// A small file that keeps changing (a log appended every 10 ms) is captured
// at most once per interval (issue 17): each capture is a put record whose
// fixed fields (path, hashes, ranges, mode, mtime: ~350 bytes) outweigh a
// ~70-byte line, so one capture per line sent ~4× the bytes appended. A path
// is busy once it was captured twice within two intervals; a busy path
// captured less than an interval ago waits (its hints coalesce) and its
// then-current state is captured when the interval has passed. A lone change,
// or a file written twice in a row (a save, then a chmod), still goes at once.
// A marker's barrier never asks: it captures every file as it is.

/**
 * The config's default (`captureIntervalMs`): a busy log reaches the target
 * at most this much later than it would, and a line every 10 ms puts ~50 lines in a record.
 */
export const DEFAULT_CAPTURE_INTERVAL_MS = 500;

/** The last capture of a recently captured path. */
interface Recent {
  /** When it was journaled (ms). */
  readonly at: number;
  readonly seq: number;
  /** Captured within two intervals of the capture before it: the next one waits for the interval. */
  readonly busy: boolean;
}

export class CaptureInterval {
  readonly #ms: number;
  readonly #now: () => number;
  /** Path -> its last capture, in the order of their captures (a capture moves its path to the end): the stale leave from the front. */
  readonly #recent = new Map<string, Recent>();

  /** `ms` 0 turns pacing off. */
  constructor(ms: number, now: () => number) {
    this.#ms = ms;
    this.#now = now;
  }

  /** How many paths it remembers. */
  get size(): number {
    return this.#recent.size;
  }

  /** Notes that a version of path was journaled (as seq) now. */
  captured(path: string, seq: number): void {
    if (this.#ms <= 0) return;
    const now = this.#now();
    const before = this.#recent.get(path);
    this.#recent.delete(path);
    this.#recent.set(path, { at: now, seq, busy: before !== undefined && now - before.at < 2 * this.#ms });
    // A path not captured for two intervals is quiet again: forgotten, so a tree of many files changed once each keeps no state.
    for (const [stale, recent] of this.#recent) {
      if (now - recent.at < 2 * this.#ms) break;
      this.#recent.delete(stale);
    }
  }

  /** When path's next capture may run (ms), if it must wait now; else undefined. */
  waitsUntil(path: string): { readonly until: number; readonly seq: number } | undefined {
    const recent = this.#recent.get(path);
    if (recent === undefined || !recent.busy) return undefined;
    const until = recent.at + this.#ms;
    return this.#now() < until ? { until, seq: recent.seq } : undefined;
  }
}
