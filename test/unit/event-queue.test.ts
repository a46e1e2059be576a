// Kernel event-queue overflow: Node drops inotify's IN_Q_OVERFLOW, so the
// agent looks for what an overflow leaves behind (a burst of events as large
// as the queue in one turn of the event loop), names it in status and scans.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { EventQueueWatch, readQueueLimit, WatchQueueOverflowError } from "../../agent/event-queue.ts";
import type { ScanFailure } from "../../agent/held-files.ts";
import { watchSet, type SetWatcher } from "../../agent/watcher.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { eventually } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const SET = "busy";

/** A queue check whose turns end when the test says. */
function steppedQueue(limit: number | undefined) {
  const ends: (() => void)[] = [];
  const queue = new EventQueueWatch({ limit, afterTurn: (end) => ends.push(end) });
  const heard: WatchQueueOverflowError[] = [];
  queue.onOverflow((error) => heard.push(error));
  return { queue, heard, endTurn: () => ends.splice(0).forEach((end) => end()) };
}

it("suspects an overflow when one turn of the event loop delivers nearly the queue's size, and not below", () => {
  const { queue, heard, endTurn } = steppedQueue(100);
  for (let i = 0; i < 89; i++) queue.event();
  endTurn();
  expect(heard).toEqual([]);
  // Counted per turn: the next burst starts from zero.
  for (let i = 0; i < 90; i++) queue.event();
  endTurn();
  expect(heard.map((error) => [error.burst, error.limit])).toEqual([[90, 100]]);
  expect(heard[0]?.message).toMatch(/may have lost changes: 90 events arrived at once.*max_queued_events=100/);
});

it("checks nothing where the kernel has no queue limit to read", () => {
  const { queue, heard, endTurn } = steppedQueue(undefined);
  for (let i = 0; i < 1_000; i++) queue.event();
  endTurn();
  expect(heard).toEqual([]);
  expect(readQueueLimit("/nonexistent/max_queued_events")).toBeUndefined();
});

let watcher: SetWatcher | undefined;
let dir: ReturnType<typeof tempDir> | undefined;
let h: Harness | undefined;

afterEach(async () => {
  await watcher?.close();
  watcher = undefined;
  dir?.remove();
  dir = undefined;
  await h?.close();
  h = undefined;
});

it("reports a burst of real inotify events that fills the queue as a watcher error", async () => {
  dir = tempDir();
  mkdirSync(join(dir.path, "sub"));
  const queue = new EventQueueWatch({ limit: 64 });
  const errors: Error[] = [];
  let ready = false;
  watcher = watchSet({ name: SET, root: dir.path, exclude: [] }, { hint: () => undefined, error: (error) => errors.push(error), ready: () => (ready = true) }, [], queue);
  await eventually(async () => expect(ready).toBe(true), 5_000, 10);
  // Written while the event loop is held: the events wait in the kernel's queue and arrive in one turn.
  for (let i = 0; i < 100; i++) writeFileSync(join(dir.path, "sub", `f${i}`), "x");
  await eventually(async () => expect(errors.some((error) => error instanceof WatchQueueOverflowError)).toBe(true), 10_000, 10);
});

it("catches up with a scan, named in status, when the kernel's queue really overflowed", async () => {
  const limit = readQueueLimit();
  // Linux only, and not where the queue is so large that filling it costs minutes.
  if (limit === undefined || limit > 65_536) return;
  let ready = false;
  let named: ScanFailure | undefined;
  h = agentHarness(SET, {
    monitorEnabled: true,
    rescanMs: 60 * 60_000,
    watch: (spec, handlers, ignore) =>
      watchSet(
        spec,
        {
          ...handlers,
          error: (error) => {
            handlers.error(error);
            if (error instanceof WatchQueueOverflowError) named ??= h?.journal.held.failedScanOf(SET);
          },
          ready: () => (ready = true),
        },
        ignore,
      ),
  });
  const harness = h;
  await harness.agent.start();
  await eventually(async () => expect(ready).toBe(true), 5_000, 10);
  // Each file raises two events (made, written) while the event loop is held: more than the queue holds.
  const files = Math.ceil(limit * 0.6);
  for (let i = 0; i < files; i++) writeFileSync(join(harness.src.path, `f${i}`), "x");
  await eventually(async () => expect(harness.journal.index.entryCount(SET)).toBe(files), 60_000, 100);
  expect(named?.error).toMatch(/WatchQueueOverflowError: the watcher may have lost changes/);
  // The catch-up scan of the whole set succeeded: status names nothing any more.
  await eventually(async () => expect(harness.journal.held.failedScanOf(SET)).toBeUndefined(), 10_000, 50);
}, 180_000);
