// A failed capture of the watcher's changes left them in no journal record,
// and no later event names a delete or a new symlink again: they waited for
// the 15-minute rescan. A scan of the whole set catches up within seconds,
// waiting twice as long while it keeps failing, and status names the failure
// (scan-failed) until a scan succeeds. The catch-up's timer is recorded by
// hand: the tests run it when they choose, and read the waits it asked for.

import { rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { CaptureRetry, type CaptureRetryOptions } from "../../agent/capture-retry.ts";
import { heldNow, scanFailureNow } from "../../agent/held-files.ts";
import type { WatchHandlers } from "../../agent/watcher.ts";
import { findProblems } from "../../agent/set-health.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { eventually } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "app";
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Timers the code under test started, run by the test. */
class RecordedTimers {
  readonly waits: number[] = [];
  #due: (() => void)[] = [];

  readonly setTimer: NonNullable<CaptureRetryOptions["setTimer"]> = (run, ms) => {
    this.waits.push(ms);
    this.#due.push(run);
    return { cancel: () => (this.#due = this.#due.filter((r) => r !== run)) };
  };

  get pending(): number {
    return this.#due.length;
  }

  /** Runs the timers due now. */
  fire(): void {
    const due = this.#due;
    this.#due = [];
    for (const run of due) run();
  }
}

function failAppends(harness: Harness, times: number): void {
  const append = harness.journal.append.bind(harness.journal);
  let left = times;
  vi.spyOn(harness.journal, "append").mockImplementation((set, changes) => {
    if (left > 0) {
      left -= 1;
      throw new Error("disk I/O error");
    }
    return append(set, changes);
  });
}

const problemKinds = async (harness: Harness) =>
  findProblems({
    set: SET,
    counters: harness.journal.sets.counters(SET),
    generation: harness.journal.sets.knownGeneration(SET),
    target: { error: "not asked" },
    now: new Date(),
    scanFailed: scanFailureNow(harness.journal.held, SET),
  })
    .map((p) => p.kind)
    .filter((kind) => kind !== "target-unreachable");

it("waits the first wait, then twice as long while the scan keeps failing (up to the most), and the first again after a success", async () => {
  const timers = new RecordedTimers();
  let scans = 0;
  const retry: CaptureRetry = new CaptureRetry(
    async () => {
      scans += 1;
      retry.failed();
    },
    { firstMs: 10, maxMs: 50, setTimer: timers.setTimer },
  );
  expect(retry.failed()).toBe(10);
  // One catch-up at a time: a second failure meanwhile does not start another.
  retry.failed();
  expect(timers.pending).toBe(1);
  for (let i = 0; i < 4; i++) {
    timers.fire();
    await Promise.resolve();
  }
  expect(scans).toBe(4);
  expect(timers.waits).toEqual([10, 20, 40, 50, 50]);
  retry.succeeded();
  expect(timers.pending).toBe(0);
  retry.failed();
  expect(timers.waits.at(-1)).toBe(10);
  retry.stop();
  expect(timers.pending).toBe(0);
  retry.failed();
  expect(timers.pending).toBe(0);
});

it("catches up a failed capture of the watcher's changes with a scan of the set soon, named scan-failed until then", async () => {
  const timers = new RecordedTimers();
  const harness = agentHarness(SET, { captureRetry: { firstMs: 1000, setTimer: timers.setTimer } });
  h = harness;
  const src = harness.src.path;
  writeFileSync(join(src, "old.txt"), "old");
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);

  // What the e2e lost: a delete and a new symlink, which no later event names again.
  rmSync(join(src, "old.txt"));
  symlinkSync("old.txt", join(src, "link"));
  failAppends(harness, 1);
  harness.agent.hint(SET, "old.txt");
  harness.agent.hint(SET, "link");
  // The hints' own timer runs the capture, as the watcher's do.
  await eventually(async () => expect(scanFailureNow(harness.journal.held, SET)).not.toBeNull(), 10_000, 10);
  expect(scanFailureNow(harness.journal.held, SET)?.error).toContain("capturing the changes the watcher reported: Error: disk I/O error");
  expect(await problemKinds(harness)).toEqual(["scan-failed"]);
  expect(timers.waits).toEqual([1000]);
  expect(harness.journal.index.entry(SET, "link")).toBeUndefined();

  timers.fire();
  await eventually(async () => expect(harness.journal.index.entry(SET, "link")).toBeDefined(), 10_000, 10);
  await eventually(async () => expect(scanFailureNow(harness.journal.held, SET)).toBeNull(), 10_000, 10);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(src));
  expect(await problemKinds(harness)).toEqual([]);
  expect(timers.pending).toBe(0);
});

it("scans again after a longer wait while the catch-up scan fails too, and names the failure until one succeeds", async () => {
  const timers = new RecordedTimers();
  const harness = agentHarness(SET, { captureRetry: { firstMs: 1000, setTimer: timers.setTimer } });
  h = harness;
  const src = harness.src.path;
  await harness.agent.scan(SET);
  writeFileSync(join(src, "a.txt"), "a");
  // The capture, then the first catch-up scan fail.
  failAppends(harness, 2);
  harness.agent.hint(SET, "a.txt");
  await eventually(async () => expect(timers.pending).toBe(1), 10_000, 10);
  timers.fire();
  await eventually(async () => expect(timers.waits).toEqual([1000, 2000]), 10_000, 10);
  expect(scanFailureNow(harness.journal.held, SET)).toMatchObject({ folder: "", error: "Error: disk I/O error" });
  expect(harness.journal.index.entry(SET, "a.txt")).toBeUndefined();

  timers.fire();
  await eventually(async () => expect(scanFailureNow(harness.journal.held, SET)).toBeNull(), 10_000, 10);
  expect(harness.journal.index.entry(SET, "a.txt")).toBeDefined();
  expect(timers.pending).toBe(0);
});

it("a failed capture of a busy file that waited, run after a send, is named and caught up, not only logged as a failed send", async () => {
  const timers = new RecordedTimers();
  let now = 1_000_000;
  // An interval far longer than the test: the busy file's own wake-up never runs, only the capture after a send.
  const INTERVAL_MS = 3_600_000;
  const harness = agentHarness(SET, { busyFiles: { intervalMs: INTERVAL_MS, now: () => now }, captureRetry: { firstMs: 1000, setTimer: timers.setTimer } });
  h = harness;
  const file = join(harness.src.path, "app.log");
  for (const [i, content] of ["one", "two, longer", "three, longer still"].entries()) {
    writeFileSync(file, content);
    harness.agent.hint(SET, "app.log");
    expect(await harness.agent.processHints(SET)).toBe(i < 2 ? 1 : 0);
    now += 20;
  }
  expect(heldNow(harness.journal.held, SET).map((row) => row.path)).toEqual(["app.log"]);

  now += INTERVAL_MS;
  failAppends(harness, 1);
  await harness.agent.drain(SET);
  expect(scanFailureNow(harness.journal.held, SET)?.error).toContain("capturing the changes the watcher reported");
  expect(timers.waits).toEqual([1000]);

  timers.fire();
  await eventually(async () => expect(scanFailureNow(harness.journal.held, SET)).toBeNull(), 10_000, 10);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(harness.src.path));
});

it("captures what was hinted when asked directly, though the hints' own timer fired while an earlier capture ran", async () => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  try {
    const harness = agentHarness(SET);
    h = harness;
    writeFileSync(join(harness.src.path, "a.txt"), "a");
    harness.agent.hint(SET, "a.txt");
    const first = harness.agent.processHints(SET);
    // The gathering delay passes while that capture runs.
    vi.advanceTimersByTime(100);
    expect(await first).toBe(1);
    writeFileSync(join(harness.src.path, "b.txt"), "b");
    harness.agent.hint(SET, "b.txt");
    expect(await harness.agent.processHints(SET)).toBe(1);
  } finally {
    vi.useRealTimers();
  }
});

it("scans again soon when the scan after a watcher error fails", async () => {
  const timers = new RecordedTimers();
  let handlers: WatchHandlers | undefined;
  const harness = agentHarness(SET, {
    monitorEnabled: true,
    rescanMs: 60 * 60_000,
    captureRetry: { firstMs: 1000, setTimer: timers.setTimer },
    watch: (_spec, handlersOfSet) => {
      handlers = handlersOfSet;
      return { close: async () => undefined };
    },
  });
  h = harness;
  await harness.agent.start();
  writeFileSync(join(harness.src.path, "missed.txt"), "an event the watcher lost");
  failAppends(harness, 1);
  handlers?.error(new Error("watcher overflow"));
  await eventually(async () => expect(timers.waits).toEqual([1000]), 10_000, 10);
  expect(scanFailureNow(harness.journal.held, SET)).toMatchObject({ folder: "", error: "Error: disk I/O error" });
  timers.fire();
  await eventually(async () => expect(harness.journal.index.entry(SET, "missed.txt")).toBeDefined(), 10_000, 10);
  await eventually(async () => expect(scanFailureNow(harness.journal.held, SET)).toBeNull(), 10_000, 10);
  await harness.agent.stop();
});
