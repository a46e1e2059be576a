// The watcher: a watch per folder, hints for whatever happens inside, new
// folders watched as they appear, vanished ones forgotten.

import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { watchSet, type SetWatcher } from "../../agent/watcher.ts";
import { eventually } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

describe("watchSet", () => {
  let dir: ReturnType<typeof tempDir>;
  let watcher: SetWatcher;
  let hints: Set<string>;
  let errors: Error[];

  const start = async (exclude: string[] = [], ignore: string[] = []) => {
    let ready = false;
    watcher = watchSet({ name: "s", root: dir.path, exclude }, { hint: (p) => hints.add(p), error: (e) => errors.push(e), ready: () => (ready = true) }, ignore);
    await eventually(async () => expect(ready).toBe(true), 5_000, 10);
  };
  const hinted = (path: string) => eventually(async () => expect([...hints]).toContain(path), 5_000, 10);

  beforeEach(() => {
    dir = tempDir();
    hints = new Set();
    errors = [];
    mkdirSync(join(dir.path, "a/b"), { recursive: true });
  });
  afterEach(async () => {
    await watcher.close();
    dir.remove();
  });

  it("hints writes, renames and deletes in nested folders, and watches folders made after it started", async () => {
    await start();
    writeFileSync(join(dir.path, "a/b/f.txt"), "x");
    await hinted("a/b/f.txt");
    renameSync(join(dir.path, "a/b/f.txt"), join(dir.path, "a/g.txt"));
    await hinted("a/g.txt");
    mkdirSync(join(dir.path, "new/deeper"), { recursive: true });
    await hinted("new");
    // The new folders are watched once they are seen: what happens inside them is hinted too.
    await eventually(async () => {
      writeFileSync(join(dir.path, "new/deeper/later.txt"), String(Date.now()));
      expect([...hints]).toContain("new/deeper/later.txt");
    }, 5_000, 50);
    rmSync(join(dir.path, "a"), { recursive: true });
    await hinted("a");
    expect(errors).toEqual([]);
  });

  it("ignores excluded names and the agent's own state folder", async () => {
    mkdirSync(join(dir.path, "state"));
    await start(["*.tmp"], [join(dir.path, "state")]);
    writeFileSync(join(dir.path, "a/x.tmp"), "x");
    writeFileSync(join(dir.path, "state/journal.db"), "x");
    writeFileSync(join(dir.path, "a/kept.txt"), "x");
    await hinted("a/kept.txt");
    expect([...hints].filter((h) => h.endsWith(".tmp") || h.startsWith("state"))).toEqual([]);
  });
});
