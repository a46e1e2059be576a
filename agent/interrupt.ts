// Stopping the agent while it starts (SIGINT/SIGTERM before it replicates):
// the start's steps check the signal and give way with StartInterruptedError,
// so `tidemark run` exits as cleanly as after a stop (state lock released,
// journal closed) instead of by Node's default handler.

/** The start was asked to stop: not a failure (a scan it interrupted stays named as unfinished). */
export class StartInterruptedError extends Error {
  override name = "StartInterruptedError";
  /** What the start was doing. */
  readonly what: string;
  constructor(what: string) {
    super(`stopped while ${what}`);
    this.what = what;
  }
}

export function throwIfInterrupted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw new StartInterruptedError(what);
}

/** Work that may wait long (a target that does not answer): given up when the signal fires; its late outcome is dropped. */
export function interruptible<T>(work: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return work;
  throwIfInterrupted(signal, what);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new StartInterruptedError(what));
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
