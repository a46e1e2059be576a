// A large file's journaled put and busy files on a clock the test steps: what the busy-files unit tests drive by hand
// (busy-files.ts), without an agent around them; and the agent's captures of waiting files, to wait for.

import { setTimeout as sleep } from "node:timers/promises";
import { expect, vi, type MockInstance } from "vitest";
import { BusyFiles } from "../../agent/busy-files.ts";
import { SetCapture } from "../../agent/set-capture.ts";

/** A put of app.db, 1 MiB: a pace of 1 s at steppedBusyFiles' 1 MiB/s. */
export const busyPut = { op: "put", path: "app.db", size: 1024 * 1024, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { bytes: new Uint8Array() } } as const;

/** Busy files of 1 KiB and more, rebuilt at bytesPerSecond (1 MiB/s unless given), quiet after 300 ms, on `clock`. */
export function steppedBusyFiles(clock: { readonly now: number }, bytesPerSecond = 1024 * 1024): BusyFiles {
  return new BusyFiles(1024, { bytesPerSecond, quietMs: 300, now: () => clock.now });
}

/** steppedBusyFiles holding app.db's put as seq 7, sent and not applied yet: the target's checkpoint is at 6. */
export function sevenUnapplied(clock: { readonly now: number }, bytesPerSecond?: number): BusyFiles {
  const busy = steppedBusyFiles(clock, bytesPerSecond);
  busy.applied(6);
  busy.journaled([busyPut], [7]);
  return busy;
}

/** The watcher saw app.db written; its capture waits behind seq 7. */
export function writtenWaiting(busy: BusyFiles): void {
  busy.wrote("app.db");
  expect(busy.defer("app.db", 7)).toBe(true);
}

/** How long `settled` waits for the captures begun, on the real clock (node:timers/promises, which vitest does not fake). */
const SETTLE_LIMIT_MS = 30_000;

/**
 * Every capture of waiting busy files the agent begins (after a send, on the target's checkpoint, by its due timer):
 * they run in the background, and `settled` waits for those begun so far, 30 s at most: a capture that waits on a faked
 * timer (which a test that does not step it never fires) fails with a message saying so rather than at the test
 * timeout. vi.restoreAllMocks ends the spying.
 */
export function waitingCaptures(): { readonly spy: MockInstance<SetCapture["captureWaiting"]>; settled(): Promise<void> } {
  const spy = vi.spyOn(SetCapture.prototype, "captureWaiting");
  const settled = async (): Promise<void> => {
    const begun = spy.mock.results.map((result) => result.value);
    let done = 0;
    const all = Promise.all(
      begun.map(async (capture) => {
        await capture;
        done++;
      }),
    );
    const bound = new AbortController();
    const limit = sleep(SETTLE_LIMIT_MS, undefined, { signal: bound.signal }).then(() => {
      throw new Error(`${begun.length - done} of ${begun.length} capture(s) of waiting files did not settle in ${SETTLE_LIMIT_MS / 1000} s: does one wait on a fake timer the test does not step?`);
    });
    try {
      await Promise.race([all, limit]);
    } finally {
      bound.abort();
      limit.catch(() => undefined);
    }
  };
  return { spy, settled };
}
