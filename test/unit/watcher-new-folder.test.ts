// A folder that appears is watched once its event is seen; what was made in
// it before that watch began raised no event. The capture's scan of the new
// folder may list it before such an entry is made (the watch and the scan race
// under load), so the watcher hints what its own listing of the new folder
// holds: its listing comes after the watch began, and closes that window.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, expect, it } from "vitest";
import { watchSet, type SetWatcher } from "../../agent/watcher.ts";
import { eventually } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const dir = tempDir();
let watcher: SetWatcher | undefined;
afterEach(async () => {
  await watcher?.close();
});
afterAll(() => dir.remove());

it("hints the entries of a folder that appeared, made before its watch began, also in folders below it", async () => {
  const hints = new Set<string>();
  const errors: Error[] = [];
  let ready = false;
  watcher = watchSet({ name: "s", root: dir.path, exclude: ["*.tmp"] }, { hint: (p) => hints.add(p), error: (e) => errors.push(e), ready: () => (ready = true) });
  await eventually(async () => expect(ready).toBe(true), 5_000, 10);
  // Made in one go, before the watcher can watch the new folders: only "fresh" raises an event.
  mkdirSync(join(dir.path, "fresh/inner"), { recursive: true });
  writeFileSync(join(dir.path, "fresh/early.txt"), "early");
  writeFileSync(join(dir.path, "fresh/inner/deep.txt"), "deep");
  writeFileSync(join(dir.path, "fresh/skip.tmp"), "excluded");
  await eventually(async () => expect([...hints].sort()).toEqual(["fresh", "fresh/early.txt", "fresh/inner", "fresh/inner/deep.txt"]), 5_000, 10);
  expect(errors).toEqual([]);
});

it("does not hint what the set held when the watch began (the start's scan covers it)", async () => {
  const root = tempDir();
  mkdirSync(join(root.path, "old"));
  writeFileSync(join(root.path, "old/a.txt"), "a");
  const hints: string[] = [];
  let ready = false;
  watcher = watchSet({ name: "s", root: root.path, exclude: [] }, { hint: (p) => hints.push(p), error: () => undefined, ready: () => (ready = true) });
  await eventually(async () => expect(ready).toBe(true), 5_000, 10);
  writeFileSync(join(root.path, "old/b.txt"), "b");
  await eventually(async () => expect(hints).toContain("old/b.txt"), 5_000, 10);
  expect(hints.filter((h) => h !== "old/b.txt")).toEqual([]);
  root.remove();
});

it("watches a folder removed and made again before the watcher looked at either event", async () => {
  const root = tempDir();
  mkdirSync(join(root.path, "build"));
  const hints = new Set<string>();
  const errors: Error[] = [];
  let ready = false;
  watcher = watchSet({ name: "s", root: root.path, exclude: [] }, { hint: (p) => hints.add(p), error: (e) => errors.push(e), ready: () => (ready = true) });
  await eventually(async () => expect(ready).toBe(true), 5_000, 10);
  // In one go: the watcher's look at "build" (after both events) finds a folder, but not the one it watched.
  rmSync(join(root.path, "build"), { recursive: true });
  mkdirSync(join(root.path, "build"));
  await eventually(
    async () => {
      writeFileSync(join(root.path, "build/out.txt"), String(Date.now()));
      expect([...hints]).toContain("build/out.txt");
    },
    5_000,
    50,
  );
  expect(errors).toEqual([]);
  root.remove();
});
