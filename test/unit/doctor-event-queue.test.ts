// `tidemark doctor` warns when the sets hold more entries than the kernel's
// inotify event queue: one change of them all can overflow it.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { checkEventQueue, countEntries } from "../../agent/doctor-event-queue.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir>;

beforeEach(() => {
  dir = tempDir();
  mkdirSync(join(dir.path, "tree/a"), { recursive: true });
  for (const name of ["one", "two", "a/three"]) writeFileSync(join(dir.path, "tree", name), "x");
});
afterEach(() => dir.remove());

it("warns when the sets hold more entries than the queue, with the sysctl that fixes it", () => {
  // The tree, a, one, two, a/three.
  expect(countEntries(join(dir.path, "tree"))).toEqual({ entries: 5, complete: true });
  const config = { sets: [{ name: "www", root: join(dir.path, "tree"), exclude: [] }] };
  const limit = join(dir.path, "max_queued_events");
  writeFileSync(limit, "4\n");
  expect(checkEventQueue(config, limit)).toEqual({
    name: "inotify queue",
    level: "warn",
    detail: expect.stringMatching(/^5 entries, queue 4 events: .*can overflow it; the agent notices and scans the whole set.*sysctl fs\.inotify\.max_queued_events=10$/),
  });
  writeFileSync(limit, "16384\n");
  expect(checkEventQueue(config, limit)).toMatchObject({ level: "ok", detail: "5 entries, queue 16384 events" });
  expect(checkEventQueue(config, join(dir.path, "missing")).level).toBe("ok");
});

it("says a count is a lower bound when its time ran out", () => {
  const config = { sets: [{ name: "www", root: join(dir.path, "tree"), exclude: [] }] };
  const limit = join(dir.path, "max_queued_events");
  writeFileSync(limit, "0\n");
  // An unreadable limit (0 is none): nothing to compare with.
  expect(checkEventQueue(config, limit).detail).toMatch(/cannot read/);
  writeFileSync(limit, "1\n");
  expect(checkEventQueue(config, limit, -1).detail).toMatch(/^at least 1 entries, queue 1 events/);
});
