// Large busy files: one unsent version at a time (a marker's barrier still
// captures the file as it is), and a backlog that never passes the journal
// limit by more than a block, whatever the size of the files changing. The
// agent's clock is stepped by hand and its timers are fake and never run: a
// due timer firing on the wall clock's time (a loaded machine) raced the
// drains these tests step the agent with (busy-files-timers.test.ts tests it).

import { randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { waitingCaptures } from "../support/busy-file.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "db";
let h: Harness;
let captures: ReturnType<typeof waitingCaptures>;
/** The agent's clock (busy files), stepped by hand. */
let now = 1_000_000;

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  captures = waitingCaptures();
  now = 1_000_000;
});

afterEach(async () => {
  vi.useRealTimers();
  vi.restoreAllMocks();
  await h.close();
});

const write = (name: string, content: string | Buffer) => writeFileSync(join(h.src.path, name), content);
/** Unsent records that change path. */
const unsentOf = (path: string) => h.journal.recordsTouching(SET, path, h.journal.sets.counters(SET).sentSeq);

it("holds one unsent version of a large file that keeps changing, and sends the latest once the previous one went", async () => {
  h = agentHarness(SET, { coalesceBytes: 256 * 1024 });
  write("big.db", randomBytes(300 * 1024));
  write("small.txt", "v0");
  await h.agent.scan(SET);
  expect(unsentOf("big.db")).toHaveLength(1);

  // Nothing is sent meanwhile: every later change of the large file waits for the first to go.
  for (let version = 1; version <= 5; version++) {
    write("big.db", randomBytes(300 * 1024));
    write("small.txt", `v${version}`);
    h.agent.hint(SET, "big.db");
    h.agent.hint(SET, "small.txt");
    await h.agent.processHints(SET);
    await h.agent.scan(SET);
  }
  expect(unsentOf("big.db")).toHaveLength(1);
  // Small files are not held back.
  expect(unsentOf("small.txt")).toHaveLength(6);

  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  // Two versions of the large file travelled: the first, and the latest once the first had gone.
  const puts = h.transport.bodies.flatMap((body) => (JSON.parse(body) as { records: { op: string; path?: string }[] }).records).filter((r) => r.op === "put" && r.path === "big.db");
  expect(puts).toHaveLength(2);
});

/** The applier's checkpoint as the agent's status poll reads it (sentWithCheckpoint), held back by hand. */
let reported = 0;

/** big.db captured and sent, paced at 1 s (300 KiB at 300 KiB/s), the target's checkpoint known (0 until `reported` moves). */
async function sentWithCheckpoint(): Promise<void> {
  const store = new MemoryStore();
  reported = 0;
  const targetStatus = async (set: string) => ({ ...(await readSetStatus(store, set)), lastSeq: reported });
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, targetStatus, busyFiles: { bytesPerSecond: 300 * 1024, quietMs: 300, now: () => now } }, { store });
  write("big.db", randomBytes(300 * 1024));
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  await h.agent.checkTarget(SET);
}

/** The puts of path that travelled, in order. */
const sentPuts = (path: string) => h.transport.bodies.flatMap((body) => (JSON.parse(body) as { records: { op: string; path?: string }[] }).records).filter((r) => r.op === "put" && r.path === path);

it("paces a busy large file by its size even once its last version is sent, and sends the version after the last write once the file is quiet", async () => {
  // 300 KiB at 30 KiB/s: the next version of the file waits 10 s unless it goes quiet for a tenth of that (1 s, more
  // than the 300 ms of quietMs: a wrong guess costs the target a whole version).
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, busyFiles: { bytesPerSecond: 30 * 1024, quietMs: 300, now: () => now } });
  write("big.db", randomBytes(300 * 1024));
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect(sentPuts("big.db")).toHaveLength(1);

  const change = async (ms: number) => {
    now += ms;
    write("big.db", randomBytes(300 * 1024));
    h.agent.hint(SET, "big.db");
    await h.agent.processHints(SET);
    await h.agent.drain(SET);
  };
  // Sent, but written again within its pace: the version waits.
  await change(100);
  await change(200);
  expect(unsentOf("big.db")).toHaveLength(0);
  expect(sentPuts("big.db")).toHaveLength(1);
  // Quiet for a tenth of the pace: the version after the last write goes at once, the one before it never.
  now += 900;
  await h.agent.drain(SET);
  expect(sentPuts("big.db")).toHaveLength(1);
  now += 100;
  await h.agent.drain(SET);
  expect(sentPuts("big.db")).toHaveLength(2);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));

  // Written every 250 ms: never quiet, so one version once the target can have rebuilt the last one, which it
  // rebuilds after the first (without its checkpoint: 10 s each, so 20 s after the first was journaled).
  for (let i = 0; i < 74; i++) await change(250);
  expect(sentPuts("big.db")).toHaveLength(2);
  await change(250);
  expect(sentPuts("big.db")).toHaveLength(3);
  // Written once more, then quiet: the version after the last write goes.
  await change(250);
  expect(sentPuts("big.db")).toHaveLength(3);
  now += 1000;
  await h.agent.drain(SET);
  expect(sentPuts("big.db")).toHaveLength(4);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("holds a busy file's next version until the target's status shows the last one applied, then captures it", async () => {
  await sentWithCheckpoint();
  // Its 1 s pace is over, but the target has not applied it yet: the next version waits.
  now += 2000;
  write("big.db", randomBytes(300 * 1024));
  h.agent.hint(SET, "big.db");
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  expect(sentPuts("big.db")).toHaveLength(1);
  reported = h.journal.sets.counters(SET).sentSeq;
  await h.agent.checkTarget(SET);
  await captures.settled();
  expect(sentPuts("big.db").length + unsentOf("big.db").length).toBe(2);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("sends the version after a quiet moment behind the one the target rebuilds, but no third while both are unapplied, and names it held", async () => {
  await sentWithCheckpoint();
  const first = h.journal.sets.counters(SET).sentSeq;
  const change = async () => {
    now += 100;
    write("big.db", randomBytes(300 * 1024));
    h.agent.hint(SET, "big.db");
    await h.agent.processHints(SET);
    await h.agent.drain(SET);
  };
  // Written, then quiet while the first version is unapplied: the version after the pause goes behind it.
  await change();
  now += 400;
  await h.agent.drain(SET);
  expect(sentPuts("big.db")).toHaveLength(2);
  // The pause was not the last write: quiet again, with two versions unapplied, the next waits.
  await change();
  now += 1000;
  await h.agent.drain(SET);
  expect(sentPuts("big.db")).toHaveLength(2);
  expect(h.journal.held.of(SET).map((row) => row.reason)).toEqual([expect.stringContaining(`two versions of it to apply (seq ${first} and`)]);
  // The target applied the first: the quiet file's newest version goes, and the target holds the source's content.
  reported = first;
  await h.agent.checkTarget(SET);
  await captures.settled();
  expect(sentPuts("big.db").length + unsentOf("big.db").length).toBe(3);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  expect(h.journal.held.of(SET)).toEqual([]);
});

it("lets a marker's barrier capture a large file that waits, so the marker sees it as it was, and status no longer names it held", async () => {
  // Paced at 10 s: held afterwards only if it still waited.
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, busyFiles: { bytesPerSecond: 30 * 1024 } });
  write("big.db", randomBytes(300 * 1024));
  await h.agent.scan(SET);
  const atBarrier = randomBytes(300 * 1024);
  write("big.db", atBarrier);
  // The watcher's capture waits behind the unsent version: named as held.
  h.agent.hint(SET, "big.db");
  await h.agent.processHints(SET);
  expect(h.journal.held.of(SET).map((row) => row.path)).toEqual(["big.db"]);
  const marker = await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
  const unsent = unsentOf("big.db");
  expect(unsent).toHaveLength(2);
  expect(unsent.every((r) => r.seq < marker.seq)).toBe(true);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  // Its newest content went with the marker: no longer held.
  expect(h.journal.held.of(SET)).toEqual([]);
});

it("does not coalesce files below the threshold", async () => {
  h = agentHarness(SET, { coalesceBytes: 1024 * 1024 });
  write("big.db", randomBytes(300 * 1024));
  await h.agent.scan(SET);
  write("big.db", randomBytes(300 * 1024));
  h.agent.hint(SET, "big.db");
  await h.agent.processHints(SET);
  expect(unsentOf("big.db")).toHaveLength(2);
});

const LIMIT = 1024 * 1024;

it("keeps a scan's backlog within a block of the limit, even in one folder of large files", async () => {
  h = agentHarness(SET, { journalLimitBytes: LIMIT });
  mkdirSync(join(h.src.path, "one-folder"));
  for (let i = 0; i < 12; i++) writeFileSync(join(h.src.path, "one-folder", `f${i}.bin`), randomBytes(300 * 1024));
  const report = await h.agent.scan(SET);
  expect(report.stopped).toBe(true);
  expect(h.journal.sets.counters(SET).backlogBytes).toBeLessThanOrEqual(LIMIT + BLOCK_SIZE);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("keeps the watcher's captures within a block of the limit", async () => {
  h = agentHarness(SET, { journalLimitBytes: LIMIT });
  await h.agent.scan(SET);
  for (let i = 0; i < 12; i++) {
    write(`f${i}.bin`, randomBytes(300 * 1024));
    h.agent.hint(SET, `f${i}.bin`);
  }
  await h.agent.processHints(SET);
  const counters = h.journal.sets.counters(SET);
  expect(counters.overflowed).toBe(true);
  expect(counters.backlogBytes).toBeGreaterThan(0);
  expect(counters.backlogBytes).toBeLessThanOrEqual(LIMIT + BLOCK_SIZE);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("journals a file larger than the limit on its own, so it can still be sent", async () => {
  h = agentHarness(SET, { journalLimitBytes: LIMIT });
  write("huge.bin", randomBytes(LIMIT + 300 * 1024));
  await h.agent.scan(SET);
  expect(h.journal.sets.counters(SET).backlogRecords).toBe(1);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});
