// A file that keeps changing while a marker's barrier reads it is journaled
// as read: bytes that may be no state the file was ever in (a 100 MiB file
// rewritten at both ends while `task --wait` ran restored with its tail
// newer than its head, and the task said "succeeded"). The marker names such
// files, and `task` warns of them. The change is made by hand: the file's
// mtime moves at each of its lstats, as a busy writer's would.

import { utimesSync, writeFileSync } from "node:fs";
import type * as FsPromises from "node:fs/promises";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { changingWhileReadWarning } from "../../agent/commands/task.ts";
import { TaskFieldsSchema } from "../../contract/tasks.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

/** Absolute paths whose mtime moves on at each lstat. */
const busy = new Set<string>();
let tick = 1_700_000_000;

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  const lstat = async (...args: Parameters<typeof actual.lstat>) => {
    const st = await actual.lstat(...args);
    const [file] = args;
    if (typeof file === "string" && busy.has(file)) {
      tick += 1;
      utimesSync(file, tick, tick);
    }
    return st;
  };
  return { ...actual, lstat };
});

const SET = "app";
let h: Harness | undefined;

afterEach(async () => {
  busy.clear();
  await h?.close();
  h = undefined;
});

it("names the files that kept changing while the barrier read them, and only those", async () => {
  const harness = agentHarness(SET);
  h = harness;
  writeFileSync(join(harness.src.path, "busy.db"), "pages");
  writeFileSync(join(harness.src.path, "quiet.txt"), "still");
  busy.add(join(harness.src.path, "busy.db"));
  const queued = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  expect(queued.changingWhileRead).toEqual(["busy.db"]);

  busy.clear();
  writeFileSync(join(harness.src.path, "busy.db"), "pages, settled");
  expect((await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) })).changingWhileRead).toBeUndefined();
});

it("warns naming the first ten files and counting the rest", () => {
  const paths = Array.from({ length: 12 }, (_, i) => `db/${i}.db`);
  expect(changingWhileReadWarning(paths)).toMatch(/^12 file\(s\) kept changing while the barrier read them: .*--quiesce.*: db\/0\.db, .*db\/9\.db and 2 more$/);
});
