// The timer that captures a waiting busy file (set-capture.ts with busy-files.ts): armed no earlier than it can be
// due, re-armed when an earlier version applied brings it closer, run after the loop's I/O, and quiet taken from the
// watcher's hints. The agent's clock and its timers are stepped together by hand (fake setTimeout; setImmediate, the
// files and the journal stay real), so nothing here waits on the wall clock.

import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { BusyFiles } from "../../agent/busy-files.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { waitingCaptures } from "../support/busy-file.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "db";
let h: Harness;
const clock = { now: 0 };
let captures: ReturnType<typeof waitingCaptures>;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  clock.now = 1_000_000;
  captures = waitingCaptures();
});

afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  await h.close();
});

/** Moves the agent's clock and its timers on together, a millisecond at a time: a timer fires when its moment is due. */
function step(ms: number): void {
  for (let i = 0; i < ms; i++) {
    clock.now += 1;
    vi.advanceTimersByTime(1);
  }
}

/** Lets the due timer's setImmediate run, then waits for every capture of waiting files begun so far. */
async function settle(): Promise<void> {
  await new Promise((resolve) => setImmediate(resolve));
  await captures.settled();
}

const write = (name: string) => writeFileSync(join(h.src.path, name), randomBytes(300 * 1024));
/** Versions of path journaled so far: sent puts and unsent records. */
const versions = (path: string) => {
  const sent = h.transport.bodies.flatMap((body) => (JSON.parse(body) as { records: { op: string; path?: string }[] }).records).filter((r) => r.op === "put" && r.path === path);
  return sent.length + h.journal.recordsTouching(SET, path, h.journal.sets.counters(SET).sentSeq).length;
};
/** 300 KiB at 30 KiB/s: a pace of 10 s, quiet after 1 s without a write. */
const busyFiles = { bytesPerSecond: 30 * 1024, quietMs: 300, now: () => clock.now };

/** big.db captured and sent, then written again 100 ms on, as the watcher tells (its capture not begun). */
async function sentThenWrittenAgain(): Promise<void> {
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, busyFiles });
  write("big.db");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  step(100);
  write("big.db");
  h.agent.hint(SET, "big.db");
}

it("arms no timer for a waiting file whose previous version is not sent: the send captures it, nothing spins meanwhile", async () => {
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, busyFiles });
  write("big.db");
  await h.agent.scan(SET);
  // Written again while the first version is journaled and not sent (a large upload, the target unreachable).
  step(100);
  write("big.db");
  h.agent.hint(SET, "big.db");
  await h.agent.processHints(SET);
  const ready = vi.spyOn(BusyFiles.prototype, "ready");
  // Past its quiet moment and its pace: no timer wakes to ask whether it is due before the send.
  step(20_000);
  await settle();
  expect(ready).not.toHaveBeenCalled();
  await h.agent.drain(SET);
  expect(versions("big.db")).toBe(2);
});

it("re-arms the timer earlier once the target applied the version a quiet file waited behind", async () => {
  const store = new MemoryStore();
  let reported = 0;
  const targetStatus = async (set: string) => ({ ...(await readSetStatus(store, set)), lastSeq: reported });
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, targetStatus, busyFiles }, { store });
  write("big.db");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  await h.agent.checkTarget(SET);
  const first = h.journal.sets.counters(SET).sentSeq;
  const change = async () => {
    step(100);
    write("big.db");
    h.agent.hint(SET, "big.db");
    await h.agent.processHints(SET);
    await h.agent.drain(SET);
  };
  await change();
  // Quiet: the timer armed for its quiet moment captures the second version, which goes behind the first (rebuilt).
  step(1100);
  await settle();
  await h.agent.drain(SET);
  expect(versions("big.db")).toBe(2);
  // Written again: the third waits behind both, its timer set for the end of the first one's wait (seconds away).
  await change();
  // The target applied the first while the file is still written; then the writes stop and the file is quiet.
  reported = first;
  await h.agent.checkTarget(SET);
  await change();
  step(1500);
  await settle();
  expect(versions("big.db")).toBe(3);
});

it("decides whether a file is quiet after the loop's I/O: a write the watcher saw as the timer fired keeps it waiting", async () => {
  await sentThenWrittenAgain();
  await h.agent.processHints(SET);
  captures.spy.mockClear();
  // The timer fires at the file's quiet moment, 1 s after its last write; the watcher's event of a write at that very
  // moment came while the loop ran the timer, and is delivered in the same turn, before the timer's capture looks.
  step(1000);
  write("big.db");
  h.agent.hint(SET, "big.db");
  await settle();
  expect(captures.spy).toHaveBeenCalledTimes(1);
  expect(versions("big.db")).toBe(1);
  // Quiet 1 s after that write: captured then.
  step(1000);
  await settle();
  expect(versions("big.db")).toBe(2);
});

it("takes quiet from the watcher's hint, not from when the capture reached the set's lane", async () => {
  await sentThenWrittenAgain();
  // The capture reaches the lane 1 s after the write (the clock alone moves: no timer runs meanwhile): the file has
  // been quiet that long, so its due timer is armed for 0 ms, and one step fires it.
  clock.now += 1000;
  await h.agent.processHints(SET);
  step(1);
  await settle();
  expect(versions("big.db")).toBe(2);
});

it("after a restart, holds a busy file's capture behind the version the previous run left unsent, not a second one next to it", async () => {
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, busyFiles });
  write("big.db");
  await h.agent.scan(SET);
  await h.agent.stop();
  h.restart();
  step(100);
  write("big.db");
  await h.agent.scan(SET);
  expect(h.journal.recordsTouching(SET, "big.db", h.journal.sets.counters(SET).sentSeq)).toHaveLength(1);
  // Sent: the newest is captured once it is paced or quiet.
  await h.agent.drain(SET);
  step(1000);
  await settle();
  await h.agent.drain(SET);
  expect(versions("big.db")).toBe(2);
});
