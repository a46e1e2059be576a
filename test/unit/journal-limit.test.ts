// The journal limit: a backlog that reaches it stops journaling (the set is
// out of sync), and once it drains a catch-up scan journals what changed.
// Nothing is lost.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { scanNow } from "../../agent/held-files.ts";
import type { Logger } from "../../agent/log.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "logs";
const LIMIT = 4096;
let h: Harness;
const logged: string[] = [];
const log: Logger = {
  debug() {},
  info: (msg) => logged.push(`info ${msg}`),
  warn: (msg) => logged.push(`warn ${msg}`),
  error: (msg) => logged.push(`error ${msg}`),
};

beforeEach(() => {
  h = agentHarness(SET, { journalLimitBytes: LIMIT, log });
  logged.length = 0;
  for (let d = 0; d < 10; d++) {
    mkdirSync(join(h.src.path, `d${d}`));
    for (let f = 0; f < 3; f++) writeFileSync(join(h.src.path, `d${d}`, `f${f}`), Buffer.alloc(1000, d * 3 + f));
  }
});

afterEach(() => h.close());

it("stops journaling at the limit, is out of sync, and catches up without losing anything", async () => {
  const report = await h.agent.scan(SET);
  expect(report.stopped).toBe(true);
  const counters = h.journal.sets.counters(SET);
  expect(counters.overflowed).toBe(true);
  // One directory's worth past the limit at most: the check runs between directories.
  expect(counters.backlogBytes).toBeLessThanOrEqual(LIMIT + 3000);
  expect(logged.some((l) => l.startsWith("error journal limit reached"))).toBe(true);

  // A change while full is not journaled...
  writeFileSync(join(h.src.path, "d0", "f0"), "changed while the journal was full");
  h.agent.hint(SET, "d0/f0");
  expect(await h.agent.processHints(SET)).toBe(0);

  // ...and arrives anyway: draining brings the backlog down, and the catch-up scan finds it.
  await h.agent.drain(SET);
  expect(h.journal.sets.counters(SET)).toMatchObject({ overflowed: false, backlogRecords: 0 });
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  expect(logged.some((l) => l.startsWith("info journal drained; catching up with a scan"))).toBe(true);
});

it("remembers a full journal across a restart", async () => {
  await h.agent.scan(SET);
  await h.agent.stop();
  h.restart();
  expect(h.journal.sets.counters(SET).overflowed).toBe(true);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("keeps the set marked full until the catch-up scan is named: status never sees neither", async () => {
  await h.agent.scan(SET);
  expect(h.journal.sets.counters(SET).overflowed).toBe(true);
  // Whenever the mark is cleared, the scan that catches up must already be named (the two in one transaction).
  const scanNamedAtClear: boolean[] = [];
  const setOverflowed = h.journal.sets.setOverflowed.bind(h.journal.sets);
  const spy = vi.spyOn(h.journal.sets, "setOverflowed").mockImplementation((set, overflowed) => {
    if (!overflowed) scanNamedAtClear.push(scanNow(h.journal.held, SET) !== null);
    setOverflowed(set, overflowed);
  });
  try {
    await h.agent.drain(SET);
  } finally {
    spy.mockRestore();
  }
  expect(scanNamedAtClear.length).toBeGreaterThan(0);
  expect(scanNamedAtClear.every(Boolean)).toBe(true);
  expect(h.journal.sets.counters(SET).overflowed).toBe(false);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("a set marked full whose backlog drained catches up at its next scan, with no send to prompt it", async () => {
  // As after a restart once the backlog had been sent: nothing left to send, so no send's catch-up would ever run.
  for (let d = 1; d < 10; d++) rmSync(join(h.src.path, `d${d}`), { recursive: true });
  h.journal.sets.setOverflowed(SET, true);
  const report = await h.agent.scan(SET);
  expect(report.stopped).toBeUndefined();
  expect(h.journal.sets.counters(SET).overflowed).toBe(false);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});
