// A burst of watcher errors (queue overflows on a busy tree) asks for a catch-up scan each: one that still waits in
// the set's lane serves them all, so full scans never pile up behind one another.
import { afterEach, expect, it, vi } from "vitest";
import { SetCapture } from "../../agent/set-capture.ts";
import type { WatchHandlers } from "../../agent/watcher.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "busy";
let h: Harness | undefined;

afterEach(async () => {
  vi.restoreAllMocks();
  await h?.close();
});

it("queues at most one catch-up scan for a burst of watcher errors", async () => {
  let handlers: WatchHandlers | undefined;
  h = agentHarness(SET, {
    monitorEnabled: true,
    rescanMs: 60 * 60_000,
    watch: (_spec, handlersOfSet) => {
      handlers = handlersOfSet;
      return { close: async () => undefined };
    },
    log: { debug() {}, info() {}, warn() {}, error() {} },
  });
  await h.agent.start();
  const barrier = vi.spyOn(SetCapture.prototype, "barrier");
  for (let i = 0; i < 50; i++) handlers?.error(new Error("watcher overflow"));
  // Queued behind whatever the errors queued: once it is done, so are they.
  await h.agent.scan(SET);
  // The one catch-up scan, and the scan above.
  expect(barrier).toHaveBeenCalledTimes(2);
  // Once it began, a new error queues a new scan (changes after its start may have been missed).
  handlers?.error(new Error("watcher overflow"));
  await h.agent.scan(SET);
  expect(barrier).toHaveBeenCalledTimes(4);
});
