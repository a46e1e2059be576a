// A socket or FIFO in a set was logged as "not replicated" at every rescan
// (every 15 minutes, for ever): the log says it once, until its state
// changes, while `tidemark status` lists it every time.

import { execFileSync } from "node:child_process";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import type { Logger } from "../../agent/log.ts";
import { SkippedLog } from "../../agent/skipped-log.ts";
import { skippedNow } from "../../agent/skipped-names.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "srv";
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("logs a FIFO once across rescans, again once it was gone and came back; status lists it after every scan", async () => {
  const warned: string[] = [];
  const log: Logger = { debug() {}, info() {}, warn: (msg, fields) => warned.push(`${msg} ${String(fields?.path)}`), error() {} };
  const harness = agentHarness(SET, { log });
  h = harness;
  const src = harness.src.path;
  writeFileSync(join(src, "keep.txt"), "stays");
  execFileSync("mkfifo", [join(src, "app.pipe")]);
  const listed = () => skippedNow(harness.journal.skippedNames, SET, src).map((s) => s.path);

  for (let rescan = 0; rescan < 3; rescan++) {
    await harness.agent.scan(SET);
    expect(listed()).toEqual(["app.pipe"]);
  }
  expect(warned).toEqual(["not replicated app.pipe"]);

  // Gone, then back: a change of state, logged again once.
  rmSync(join(src, "app.pipe"));
  await harness.agent.scan(SET);
  expect(listed()).toEqual([]);
  execFileSync("mkfifo", [join(src, "app.pipe")]);
  await harness.agent.scan(SET);
  await harness.agent.scan(SET);
  expect(warned).toEqual(["not replicated app.pipe", "not replicated app.pipe"]);
});

it("logs a path again when its reason changes or after it was captured, and forgets only on a scan that finished", () => {
  const log = new SkippedLog();
  const fifo = { path: "a", reason: "a FIFO" };
  expect(log.scanned([fifo], true)).toEqual([fifo]);
  expect(log.scanned([fifo], true)).toEqual([]);
  expect(log.noted({ path: "a", reason: "a socket" })).toBe(true);
  expect(log.noted({ path: "a", reason: "a socket" })).toBe(false);
  // A scan stopped early (journal full) did not look at every path: "a" is still known.
  expect(log.scanned([], false)).toEqual([]);
  expect(log.noted({ path: "a", reason: "a socket" })).toBe(false);
  log.captured("a");
  expect(log.noted({ path: "a", reason: "a socket" })).toBe(true);
});
