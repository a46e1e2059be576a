// A failed capture of the watcher's changes (or a failed background scan)
// left those changes in no journal record: no later event names a delete or a
// new symlink again, so waiting for the periodic rescan (15 minutes) left the
// target behind that long. A scan of the whole set catches up within seconds
// instead, and again after twice the wait while it keeps failing (a failing
// disk is not scanned in a tight loop). Status names the failure until a
// whole-set scan succeeds (held-files.ts). The same backed-off retry runs an
// owed recovery again (set-recovery.ts): `scan` is whatever catches up.

/** When the catch-up scan runs; loose options, defaulted at the boundary. */
export interface CaptureRetryOptions {
  /** Wait before the first catch-up scan (ms). @default 1000 */
  readonly firstMs?: number;
  /** Longest wait while it keeps failing (ms). @default 5 minutes */
  readonly maxMs?: number;
  /** Starts a timer; tests record the waits. @default setTimeout, not keeping the process alive */
  readonly setTimer?: (run: () => void, ms: number) => { cancel(): void };
}

const DEFAULT_FIRST_MS = 1_000;
const DEFAULT_MAX_MS = 5 * 60_000;

function unrefTimer(run: () => void, ms: number): { cancel(): void } {
  const timer = setTimeout(run, ms);
  timer.unref();
  return { cancel: () => clearTimeout(timer) };
}

export class CaptureRetry {
  readonly #scan: () => Promise<void>;
  readonly #firstMs: number;
  readonly #maxMs: number;
  readonly #setTimer: (run: () => void, ms: number) => { cancel(): void };
  #waitMs: number;
  #timer: { cancel(): void } | undefined;
  #stopped = false;

  /** `scan` catches up (the set's whole scan, or an owed recovery); it calls succeeded() or failed() itself. */
  constructor(scan: () => Promise<void>, options: CaptureRetryOptions = {}) {
    this.#scan = scan;
    this.#firstMs = options.firstMs ?? DEFAULT_FIRST_MS;
    this.#maxMs = Math.max(options.maxMs ?? DEFAULT_MAX_MS, this.#firstMs);
    this.#setTimer = options.setTimer ?? unrefTimer;
    this.#waitMs = this.#firstMs;
  }

  /** A capture or scan failed: a catch-up scan runs after the current wait (one at a time), and the next wait doubles. Returns the wait (ms). */
  failed(): number {
    const wait = this.#waitMs;
    if (this.#timer || this.#stopped) return wait;
    this.#waitMs = Math.min(wait * 2, this.#maxMs);
    this.#timer = this.#setTimer(() => {
      this.#timer = undefined;
      if (!this.#stopped) void this.#scan();
    }, wait);
    return wait;
  }

  /** A whole-set scan succeeded: it journaled whatever the failure left out; the next failure waits the first wait again. */
  succeeded(): void {
    this.#timer?.cancel();
    this.#timer = undefined;
    this.#waitMs = this.#firstMs;
  }

  /** The agent stops: no catch-up scan runs any more. */
  stop(): void {
    this.#stopped = true;
    this.#timer?.cancel();
    this.#timer = undefined;
  }
}
