// The timer that captures a waiting busy file (set-capture.ts with busy-files.ts): armed no earlier than it can be
// due, re-armed when an earlier version applied brings it closer, and quiet taken from the watcher's hints. The
// agent's clock is stepped by hand; the timer itself runs on real time, so the tests wait for what it does.

import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { BusyFiles } from "../../agent/busy-files.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "db";
let h: Harness;

afterEach(async () => {
  vi.restoreAllMocks();
  await h.close();
});

const write = (name: string) => writeFileSync(join(h.src.path, name), randomBytes(300 * 1024));
/** Versions of path journaled so far: sent puts and unsent records. */
const versions = (path: string) => {
  const sent = h.transport.bodies.flatMap((body) => (JSON.parse(body) as { records: { op: string; path?: string }[] }).records).filter((r) => r.op === "put" && r.path === path);
  return sent.length + h.journal.recordsTouching(SET, path, h.journal.sets.counters(SET).sentSeq).length;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** 300 KiB at 30 KiB/s: a pace of 10 s, quiet after 1 s without a write. */
const busyFiles = (clock: { now: number }) => ({ bytesPerSecond: 30 * 1024, quietMs: 300, now: () => clock.now });

it("arms no timer for a waiting file whose previous version is not sent: the send captures it, nothing spins meanwhile", async () => {
  const clock = { now: 1_000_000 };
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, busyFiles: busyFiles(clock) });
  write("big.db");
  await h.agent.scan(SET);
  // Written again while the first version is journaled and not sent (a large upload, the target unreachable).
  clock.now += 100;
  write("big.db");
  h.agent.hint(SET, "big.db");
  await h.agent.processHints(SET);
  const ready = vi.spyOn(BusyFiles.prototype, "ready");
  // Past its quiet moment and its pace: still not due before the send (its timer from the hint, if any, fired).
  clock.now += 20_000;
  await sleep(1500);
  expect(ready.mock.calls.length).toBeLessThan(3);
  await h.agent.drain(SET);
  expect(versions("big.db")).toBe(2);
});

it("re-arms the timer earlier once the target applied the version a quiet file waited behind", async () => {
  const clock = { now: 1_000_000 };
  const store = new MemoryStore();
  let reported = 0;
  const targetStatus = async (set: string) => ({ ...(await readSetStatus(store, set)), lastSeq: reported });
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, targetStatus, busyFiles: busyFiles(clock) }, { store });
  write("big.db");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  await h.agent.checkTarget(SET);
  const first = h.journal.sets.counters(SET).sentSeq;
  const change = async () => {
    clock.now += 100;
    write("big.db");
    h.agent.hint(SET, "big.db");
    await h.agent.processHints(SET);
    await h.agent.drain(SET);
  };
  await change();
  // Quiet: the second version goes behind the first, which the target rebuilds.
  clock.now += 1100;
  await h.agent.drain(SET);
  expect(versions("big.db")).toBe(2);
  // The timer armed for the second version's quiet moment fires (and finds nothing waiting).
  await sleep(1200);
  // Written again: the third waits behind both, its timer set for the first one's wait (seconds away).
  await change();
  // The target applied the first while the file is still written; then the writes stop and the file is quiet.
  reported = first;
  await h.agent.checkTarget(SET);
  await change();
  clock.now += 1500;
  await vi.waitFor(() => expect(versions("big.db")).toBe(3), { timeout: 5000, interval: 50 });
});

it("takes quiet from the watcher's hint, not from when the capture reached the set's lane", async () => {
  const clock = { now: 1_000_000 };
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, busyFiles: busyFiles(clock) });
  write("big.db");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  clock.now += 100;
  write("big.db");
  h.agent.hint(SET, "big.db");
  // The capture reaches the lane 1 s after the write: the file has been quiet that long, so it goes at once.
  clock.now += 1000;
  await h.agent.processHints(SET);
  await vi.waitFor(() => expect(versions("big.db")).toBe(2), { timeout: 5000, interval: 50 });
});

it("after a restart, holds a busy file's capture behind the version the previous run left unsent, not a second one next to it", async () => {
  const clock = { now: 1_000_000 };
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, busyFiles: busyFiles(clock) });
  write("big.db");
  await h.agent.scan(SET);
  await h.agent.stop();
  h.restart();
  clock.now += 100;
  write("big.db");
  await h.agent.scan(SET);
  expect(h.journal.recordsTouching(SET, "big.db", h.journal.sets.counters(SET).sentSeq)).toHaveLength(1);
  // Sent: the newest is captured once it is paced or quiet.
  await h.agent.drain(SET);
  clock.now += 1000;
  await h.agent.drain(SET);
  expect(versions("big.db")).toBe(2);
});
