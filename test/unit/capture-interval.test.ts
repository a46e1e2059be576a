// A small file that keeps changing is captured at most once per interval
// (capture-interval.ts): a log appended every 10 ms travels as a few records
// carrying many lines, not one record a line, and the target still ends
// exact; a lone change, and a file written twice in a row, go at once; a
// marker's barrier captures the file as it is. Clocks are stepped by hand.

import { createHash } from "node:crypto";
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { CaptureInterval } from "../../agent/capture-interval.ts";
import { heldNow } from "../../agent/held-files.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "logs";
const INTERVAL_MS = 500;
let h: Harness | undefined;
let now = 1_000_000;

afterEach(() => {
  h?.close();
  h = undefined;
});

function harness(intervalMs: number): Harness {
  now = 1_000_000;
  h = agentHarness(SET, { busyFiles: { intervalMs, now: () => now } });
  return h;
}

function open(): Harness {
  if (!h) throw new Error("no harness");
  return h;
}

const file = (name: string) => join(open().src.path, name);

/** The puts of path that travelled, in order. */
const sentPuts = (path: string) =>
  open()
    .transport.bodies.flatMap((body) => (JSON.parse(body) as { records: { op: string; path?: string }[] }).records)
    .filter((r) => r.op === "put" && r.path === path);

/** Appends a line every 10 ms (of the stepped clock) for `ms`, each hinted and its hints processed, sending as it goes; resolves with the bytes appended. */
async function appendLines(name: string, ms: number): Promise<number> {
  const agent = open().agent;
  let bytes = 0;
  for (let elapsed = 0; elapsed < ms; elapsed += 10) {
    now += 10;
    const line = `${new Date(now).toISOString()} request ${elapsed} served in ${((elapsed % 97) / 3).toFixed(2)} ms by worker ${elapsed % 8}\n`;
    appendFileSync(file(name), line);
    bytes += line.length;
    agent.hint(SET, name);
    await agent.processHints(SET);
    if (elapsed % 50 === 0) await agent.drain(SET);
  }
  return bytes;
}

it("captures a log appended every 10 ms at most once per interval, and the target ends exact", async () => {
  const { agent, store } = harness(INTERVAL_MS);
  writeFileSync(file("app.log"), "");
  await agent.scan(SET);
  await agent.drain(SET);
  const before = open().sent();
  const appended = await appendLines("app.log", 3000);
  // The newest lines wait for the interval: once it passed, the file as it is now goes.
  now += INTERVAL_MS;
  await agent.drain(SET);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(open().src.path));
  // 300 lines: the first and second capture at once, then one per 500 ms of the 3 s, and the last.
  expect(sentPuts("app.log").length).toBeLessThanOrEqual(3 + 3000 / INTERVAL_MS + 1);
  // About what was appended went (the target: at most twice).
  expect(open().sent() - before).toBeLessThan(appended);
});

it("captures every line when the interval is 0 (the same appends, for comparison)", async () => {
  const { agent, store } = harness(0);
  writeFileSync(file("app.log"), "");
  await agent.scan(SET);
  await agent.drain(SET);
  const before = open().sent();
  const appended = await appendLines("app.log", 3000);
  await agent.drain(SET);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(open().src.path));
  // One put per line, the empty file's first, and several times the bytes appended.
  expect(sentPuts("app.log")).toHaveLength(301);
  expect(open().sent() - before).toBeGreaterThan(2 * appended);
});

it("sends a lone change, and a file written twice in a row, at once; a third change within the interval waits, named as held", async () => {
  const { agent, journal } = harness(INTERVAL_MS);
  writeFileSync(file("a.txt"), "one");
  agent.hint(SET, "a.txt");
  expect(await agent.processHints(SET)).toBe(1);
  now += 20;
  writeFileSync(file("a.txt"), "two, a little longer");
  agent.hint(SET, "a.txt");
  expect(await agent.processHints(SET)).toBe(1);
  // Twice within two intervals: the file is busy, and its next change waits for the interval.
  now += 20;
  writeFileSync(file("a.txt"), "three, longer still");
  agent.hint(SET, "a.txt");
  expect(await agent.processHints(SET)).toBe(0);
  const held = heldNow(journal.held, SET);
  expect(held.map((row) => row.path)).toEqual(["a.txt"]);
  expect(held[0]?.reason).toMatch(/keeps changing: captured at most once per captureIntervalMs/);
  // Another file is not held up by it.
  writeFileSync(file("b.txt"), "b");
  agent.hint(SET, "b.txt");
  expect(await agent.processHints(SET)).toBe(1);

  now += INTERVAL_MS;
  await agent.drain(SET);
  expect(await pictureOfTarget(open().store, SET)).toEqual(await pictureOfSource(open().src.path));
  expect(heldNow(journal.held, SET)).toEqual([]);
  // Quiet for two intervals: the file is not busy any more, and its next change goes at once.
  now += 2 * INTERVAL_MS;
  writeFileSync(file("a.txt"), "four");
  agent.hint(SET, "a.txt");
  expect(await agent.processHints(SET)).toBe(1);
});

it("lets a marker right after appends see the log exactly as it was, though its newest lines waited for the interval", async () => {
  const { agent, journal, store } = harness(INTERVAL_MS);
  writeFileSync(file("app.log"), "");
  await agent.scan(SET);
  await agent.drain(SET);
  await appendLines("app.log", 200);
  // The newest lines wait for the interval...
  expect(heldNow(journal.held, SET).map((row) => row.path)).toEqual(["app.log"]);
  const atMarker = createHash("sha256").update(readFileSync(file("app.log"))).digest("hex");
  // ... but the marker's barrier does not: it captures the log as it is, before the marker.
  const marker = await agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
  const unsent = journal.recordsTouching(SET, "app.log", journal.sets.counters(SET).sentSeq);
  const last = unsent.at(-1);
  expect(last && last.seq < marker.seq && last.change.op === "put" ? last.change.sha256 : undefined).toBe(atMarker);
  await agent.drain(SET);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(open().src.path));
});

it("forgets paths quiet for two intervals, so many files changed once each keep no state and never wait", () => {
  let clock = 0;
  const interval = new CaptureInterval(100, () => clock);
  for (let i = 0; i < 1000; i++) {
    interval.captured(`f${i}`, i + 1);
    clock += 1;
    expect(interval.waitsUntil(`f${i}`)).toBeUndefined();
  }
  // Captured twice within two intervals: busy, waits until an interval after its last capture.
  // Those captured more than two intervals ago are forgotten as others are captured.
  expect(interval.size).toBe(200);
  interval.captured("f999", 1001);
  expect(interval.waitsUntil("f999")).toEqual({ until: 1100, seq: 1001 });
  clock = 1100;
  expect(interval.waitsUntil("f999")).toBeUndefined();
  // An interval of 0 never holds anything.
  const off = new CaptureInterval(0, () => clock);
  off.captured("a", 1);
  off.captured("a", 2);
  expect(off.waitsUntil("a")).toBeUndefined();
});
