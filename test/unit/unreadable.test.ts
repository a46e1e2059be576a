// A file the agent may not read is named as not replicated (its last good
// version stays on the target), and neither a scan nor the watcher's capture
// stops at it: the rest of the set keeps flowing. The read error is made by
// hand, as permissions do not stop the root user these tests may run as.

import { mkdirSync, writeFileSync } from "node:fs";
import type * as FsPromises from "node:fs/promises";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import type * as FolderStats from "../../agent/folder-stats.ts";
import { findProblems } from "../../agent/set-health.ts";
import { skippedNow } from "../../agent/skipped-names.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const locked = new Set<string>();
const lockedFolders = new Set<string>();
const denied = (what: string, path: string) => Object.assign(new Error(`EACCES: permission denied, ${what} '${path}'`), { code: "EACCES" });

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  const readFile = async (...args: Parameters<typeof actual.readFile>) => {
    const [file] = args;
    if (typeof file === "string" && locked.has(file)) throw denied("open", file);
    return actual.readFile(...args);
  };
  // A small file is read through a handle (agent/small-file-read.ts): opening it is what is denied.
  const open = async (...args: Parameters<typeof actual.open>) => {
    const [file] = args;
    if (typeof file === "string" && locked.has(file)) throw denied("open", file);
    return actual.open(...args);
  };
  return { ...actual, readFile, open };
});

vi.mock("../../agent/folder-stats.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof FolderStats>();
  const readFolder = async (dir: string) => {
    if (lockedFolders.has(dir)) throw denied("scandir", dir);
    return actual.readFolder(dir);
  };
  return { ...actual, readFolder };
});

const SET = "www";
let h: Harness;

afterEach(async () => {
  locked.clear();
  lockedFolders.clear();
  await h.close();
});

const write = (name: string, content: string) => writeFileSync(join(h.src.path, name), content);
const skipped = () => skippedNow(h.journal.skippedNames, SET, h.src.path).map(({ path, reason }) => ({ path, reason }));

it("names a file the agent may not read, keeps scanning and capturing the rest, and replicates it once it can be read", async () => {
  h = agentHarness(SET);
  write("a.txt", "a");
  write("secret.txt", "v1");
  write("z.txt", "z");
  locked.add(join(h.src.path, "secret.txt"));

  const report = await h.agent.scan(SET);
  expect(report.skipped).toEqual([{ path: "secret.txt", reason: expect.stringContaining("cannot be read: EACCES: permission denied") as string }]);
  await h.agent.drain(SET);
  expect(Object.keys(await pictureOfTarget(h.store, SET)).sort()).toEqual(["a.txt", "z.txt"]);
  const counters = h.journal.sets.counters(SET);
  const messages = findProblems({ set: SET, counters, generation: undefined, skipped: skipped(), target: { error: "not asked" }, now: new Date() })
    .filter((p) => p.kind === "skipped-path")
    .map((p) => p.message);
  expect(messages).toEqual([expect.stringMatching(/^not replicated: secret\.txt: cannot be read: EACCES: .* \(let the agent read it, or exclude it\)$/)]);

  // The watcher's capture goes past it too.
  write("secret.txt", "v2");
  write("b.txt", "b");
  h.agent.hint(SET, "secret.txt");
  h.agent.hint(SET, "b.txt");
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  expect(Object.keys(await pictureOfTarget(h.store, SET)).sort()).toEqual(["a.txt", "b.txt", "z.txt"]);
  expect(skipped().map((s) => s.path)).toEqual(["secret.txt"]);

  // Readable again: captured on its next change, and no longer named.
  locked.clear();
  write("secret.txt", "v3");
  h.agent.hint(SET, "secret.txt");
  await h.agent.processHints(SET);
  expect(skipped()).toEqual([]);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("names a folder the agent may not list, keeps what was below it on the target, and scans the rest", async () => {
  h = agentHarness(SET);
  mkdirSync(join(h.src.path, "docs"));
  write("docs/a.txt", "a");
  write("other.txt", "o");
  await h.agent.scan(SET);
  await h.agent.drain(SET);

  lockedFolders.add(join(h.src.path, "docs"));
  write("docs/b.txt", "b");
  write("other2.txt", "o2");
  const report = await h.agent.scan(SET);
  expect(report.skipped).toEqual([{ path: "docs", reason: expect.stringContaining("cannot be read: EACCES: permission denied, scandir") as string }]);
  await h.agent.drain(SET);
  expect(Object.keys(await pictureOfTarget(h.store, SET)).sort()).toEqual(["docs", "docs/a.txt", "other.txt", "other2.txt"]);
  expect(skipped().map((s) => s.path)).toEqual(["docs"]);

  lockedFolders.clear();
  await h.agent.scan(SET);
  expect(skipped()).toEqual([]);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});
