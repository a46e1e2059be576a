// A watcher that runs out of inotify watches: the failure is reported, and
// scans on a timer keep the set replicated instead of silently missing changes.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import type { WatchHandlers } from "../../agent/watcher.ts";
import { eventually } from "../support/local-cloud.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "big";
let h: Harness;
let handlers: WatchHandlers | undefined;
let closed = 0;
const errors: string[] = [];

beforeEach(async () => {
  h = agentHarness(SET, {
    monitorEnabled: true,
    pollingScanMs: 50,
    rescanMs: 60 * 60_000,
    watch: (_spec, handlersOfSet) => {
      handlers = handlersOfSet;
      return { close: async () => void (closed += 1) };
    },
    log: { debug() {}, info() {}, warn() {}, error: (msg) => errors.push(msg) },
  });
  await h.agent.start();
});

afterEach(() => h.close());

it("reports exhausted inotify watches and keeps replicating by scanning", async () => {
  handlers?.error(Object.assign(new Error("ENOSPC: System limit for number of file watchers reached, watch '/srv'"), { code: "ENOSPC" }));
  expect(errors[0]).toMatch(/ran out of inotify watches; scanning every 50 ms instead \(raise fs\.inotify\.max_user_watches/);
  expect(h.journal.sets.counters(SET).watcherProblem).toMatch(/inotify watches/);
  expect(closed).toBe(1);
  // No watcher event will come for this file: only the scans can find it.
  writeFileSync(join(h.src.path, "after-failure.txt"), "found by a scan");
  await eventually(async () => expect((await h.store.get("data/big/after-failure.txt"))?.body.toString()).toBe("found by a scan"), 10_000, 20);
});

it("rescans on any other watcher error", async () => {
  writeFileSync(join(h.src.path, "missed.txt"), "an event the watcher lost");
  handlers?.error(new Error("watcher overflow"));
  await eventually(async () => expect((await h.store.get("data/big/missed.txt"))?.body.toString()).toBe("an event the watcher lost"), 10_000, 20);
  expect(h.journal.sets.counters(SET).watcherProblem).toBeNull();
});
