// A large file's journaled put and busy files on a clock the test steps: what the busy-files unit tests drive by hand
// (busy-files.ts), without an agent around them.

import { expect } from "vitest";
import { BusyFiles } from "../../agent/busy-files.ts";

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
