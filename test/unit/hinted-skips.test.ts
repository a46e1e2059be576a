// What the watcher reports that cannot be replicated (a name the target
// cannot carry, a FIFO) is named as skipped once captured, as a scan names
// it: `tidemark status` said "in sync" about a set holding one until the next
// full scan (rescanSeconds, 15 minutes by default).

import { execFileSync } from "node:child_process";
import { renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { skippedNow } from "../../agent/skipped-names.ts";
import { watchSet, type SetWatcher } from "../../agent/watcher.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { eventually } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const SET = "srv";
let h: Harness | undefined;
let watcher: SetWatcher | undefined;
afterEach(async () => {
  await watcher?.close();
  watcher = undefined;
  await h?.close();
  h = undefined;
});

it("the watcher hints a new entry whose name the target cannot carry (it is not watched)", async () => {
  const dir = tempDir();
  try {
    const hints = new Set<string>();
    let ready = false;
    watcher = watchSet({ name: "s", root: dir.path, exclude: ["*.tmp"] }, { hint: (p) => hints.add(p), error: () => undefined, ready: () => (ready = true) });
    await eventually(async () => expect(ready).toBe(true), 5_000, 10);
    writeFileSync(join(dir.path, "bad\nname.txt"), "x");
    writeFileSync(join(dir.path, "bad\nname.tmp"), "excluded: accepted");
    writeFileSync(join(dir.path, "good.txt"), "y");
    await eventually(async () => expect([...hints].sort()).toEqual(["bad\nname.txt", "good.txt"]), 5_000, 10);
  } finally {
    dir.remove();
  }
});

it("a hinted FIFO or unreplicable name is named as skipped, and a FIFO replaced by a file is not named any more", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  writeFileSync(join(src, "keep.txt"), "stays");
  await h.agent.start();
  await h.agent.drain(SET);
  expect(skippedNow(h.journal.skippedNames, SET, src)).toEqual([]);

  execFileSync("mkfifo", [join(src, "pipe")]);
  writeFileSync(join(src, "bad\nname.txt"), "x");
  h.agent.hint(SET, "pipe");
  h.agent.hint(SET, "bad\nname.txt");
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  expect(skippedNow(h.journal.skippedNames, SET, src).map(({ path, reason }) => [path, reason])).toEqual([
    ["bad\nname.txt", "path contains a control character"],
    ["pipe", "a FIFO: no content to replicate"],
  ]);

  rmSync(join(src, "pipe"));
  writeFileSync(join(src, "pipe"), "a file now");
  h.agent.hint(SET, "pipe");
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  expect(skippedNow(h.journal.skippedNames, SET, src).map(({ path }) => path)).toEqual(["bad\nname.txt"]);
  expect((await h.store.get(`data/${SET}/pipe`))?.body.toString()).toBe("a file now");
});

it("a hinted delete of a file whose (valid UTF-8) name holds U+FFFD is journaled, and nothing is named as skipped", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  const name = "caf\uFFFD.txt";
  writeFileSync(join(src, name), "valid utf-8");
  // Another file: deleting the one above leaves the root holding something (an emptied root is held).
  writeFileSync(join(src, "keep.txt"), "kept");
  await h.agent.start();
  await h.agent.drain(SET);
  expect((await h.store.get(`data/${SET}/${name}`))?.body.toString()).toBe("valid utf-8");

  rmSync(join(src, name));
  h.agent.hint(SET, name);
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  expect(await h.store.get(`data/${SET}/${name}`)).toBeUndefined();
  expect(h.journal.index.entry(SET, name)).toBeUndefined();
  expect(h.journal.skippedNames.list(SET)).toEqual([]);
});

it("a name that is not UTF-8 is named as skipped when hinted, and no longer once it is deleted or renamed", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  await h.agent.start();
  await h.agent.drain(SET);
  // 0xE9 alone is not UTF-8: the listing reads "caf\uFFFD.txt".
  const raw = (tail: string) => Buffer.concat([Buffer.from(`${src}/caf`), Buffer.from([0xe9]), Buffer.from(tail)]);
  writeFileSync(raw(".txt"), "latin-1 name");
  writeFileSync(raw(".log"), "latin-1 name");
  h.agent.hint(SET, "caf\uFFFD.txt");
  h.agent.hint(SET, "caf\uFFFD.log");
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  const { skippedNames } = h.journal;
  const listed = () => skippedNow(skippedNames, SET, src).map(({ path, reason }) => [path, reason]);
  expect(listed()).toEqual([
    ["caf\uFFFD.log", "name is not valid UTF-8 (S3 keys are UTF-8)"],
    ["caf\uFFFD.txt", "name is not valid UTF-8 (S3 keys are UTF-8)"],
  ]);

  // Gone from the disk: status no longer names it, even before the hint is processed.
  rmSync(raw(".txt"));
  renameSync(raw(".log"), join(src, "cafe.log"));
  expect(listed()).toEqual([]);
  h.agent.hint(SET, "caf\uFFFD.txt");
  h.agent.hint(SET, "caf\uFFFD.log");
  h.agent.hint(SET, "cafe.log");
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  expect(h.journal.skippedNames.list(SET)).toEqual([]);
  expect((await h.store.get(`data/${SET}/cafe.log`))?.body.toString()).toBe("latin-1 name");
});

it("a replicated file replaced by a FIFO is deleted from the mirror and named as skipped", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  writeFileSync(join(src, "pipe"), "was a file");
  await h.agent.start();
  await h.agent.drain(SET);
  rmSync(join(src, "pipe"));
  execFileSync("mkfifo", [join(src, "pipe")]);
  h.agent.hint(SET, "pipe");
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  expect(await h.store.get(`data/${SET}/pipe`)).toBeUndefined();
  expect(skippedNow(h.journal.skippedNames, SET, src).map(({ path, reason }) => [path, reason])).toEqual([["pipe", "a FIFO: no content to replicate"]]);
});
