// Owners are not kept, so a restore hands out no set-uid or set-gid privilege the source never gave: a file's
// set-uid and set-gid bits are dropped (a file set-uid to nobody on the source would come back set-uid to the user
// restoring it, root's as root), and the report counts and names those files. A folder keeps its bits (set-gid only
// makes new names take its group), and the sticky bit stays. A forced restore over a restored tree writes the same
// modes again, and a drill's comparison expects them. --keep-set-id (keepSetId) gives the bits back.

import { chmodSync, linkSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { checkRestoredTree } from "../../agent/drill.ts";
import { restoreAt } from "../../agent/restore-at.ts";
import { SET_ID_NAMED, writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { sha256Of } from "../support/content.ts";
import { agentHarness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

function scratch(): string {
  const dir = tempDir("tidemark-set-id-");
  cleanups.push(() => dir.remove());
  return join(dir.path, "out");
}

const T = "1700000000000000000";
const body = Buffer.from("#!/bin/sh\n");
const file = (path: string, mode: number, linkGroup?: string): RecoveryEntry => ({
  path,
  kind: "file",
  size: body.length,
  mode,
  mtimeNs: T,
  sha256: sha256Of(body),
  ...(linkGroup !== undefined ? { linkGroup } : {}),
});
const entries: RecoveryEntry[] = [
  { path: "bin", kind: "dir", size: 0, mode: 0o2775, mtimeNs: T },
  { path: "tmp", kind: "dir", size: 0, mode: 0o1777, mtimeNs: T },
  file("bin/su", 0o4755),
  file("bin/wall", 0o2755),
  file("bin/both", 0o6750),
  file("bin/sticky", 0o1755),
  file("bin/plain", 0o755),
  // Hard links of one set-uid file: each name counted.
  file("bin/one", 0o4711, "g"),
  file("bin/two", 0o4711, "g"),
];
const point = { entries, content: () => Promise.resolve(body) };
const modeOf = (to: string, path: string) => (statSync(join(to, path)).mode & 0o7777).toString(8);

describe("set-uid and set-gid bits on restore", () => {
  it("drops them from files, keeps them on folders, keeps the sticky bit, and counts and names the files", async () => {
    const to = scratch();
    const report = await writeRecoveryPoint(point, to);
    expect(report.failures).toEqual([]);
    expect(Object.fromEntries(entries.map((e) => [e.path, modeOf(to, e.path)]))).toEqual({
      bin: "2775",
      tmp: "1777",
      "bin/su": "755",
      "bin/wall": "755",
      "bin/both": "750",
      "bin/sticky": "1755",
      "bin/plain": "755",
      "bin/one": "711",
      "bin/two": "711",
    });
    expect(report.hardLinks).toBe(1);
    expect(statSync(join(to, "bin/two")).ino).toBe(statSync(join(to, "bin/one")).ino);
    expect(report.setIdDropped).toEqual({ count: 5, paths: ["bin/both", "bin/one", "bin/su", "bin/two", "bin/wall"], reason: expect.stringMatching(/^owners are not kept: /) });
  });

  it("counts every such file but names only the first ones, by path", async () => {
    const many = Array.from({ length: SET_ID_NAMED + 3 }, (_, i) => file(`f${String(i).padStart(2, "0")}`, 0o4755));
    const report = await writeRecoveryPoint({ entries: many, content: () => Promise.resolve(body) }, scratch());
    expect(report.setIdDropped?.count).toBe(SET_ID_NAMED + 3);
    expect(report.setIdDropped?.paths).toEqual(many.slice(0, SET_ID_NAMED).map((e) => e.path));
  });

  it("names nothing when no file had the bits", async () => {
    const report = await writeRecoveryPoint({ entries: [entries[0] as RecoveryEntry, file("bin/plain", 0o755)], content: () => Promise.resolve(body) }, scratch());
    expect(report.setIdDropped).toBeUndefined();
  });

  it("writes the same modes when forced over a tree it restored, and a drill's comparison finds that tree equal to the recovery point", async () => {
    const to = scratch();
    const first = await writeRecoveryPoint(point, to);
    expect(await checkRestoredTree(first.to, entries, first.failures)).toEqual([]);
    const again = await writeRecoveryPoint(point, to, { force: true });
    expect(again.failures).toEqual([]);
    expect(again.extra).toEqual([]);
    expect(again.setIdDropped?.count).toBe(5);
    expect([modeOf(to, "bin/su"), modeOf(to, "bin/wall"), modeOf(to, "bin"), modeOf(to, "bin/sticky")]).toEqual(["755", "755", "2775", "1755"]);
    expect(await checkRestoredTree(again.to, entries, again.failures)).toEqual([]);
  });

  it("gives them back with keepSetId, and names nothing", async () => {
    const to = scratch();
    const report = await writeRecoveryPoint(point, to, { keepSetId: true });
    expect(report.failures).toEqual([]);
    expect([modeOf(to, "bin/su"), modeOf(to, "bin/wall"), modeOf(to, "bin/both"), modeOf(to, "bin/one")]).toEqual(["4755", "2755", "6750", "4711"]);
    expect(report.setIdDropped).toBeUndefined();
  });

  it("drops them in a point-in-time restore (--at) too", async () => {
    const store = new MemoryStore({ versioned: true });
    const h = agentHarness("tools", {}, { store, history: { days: 7, checkpointEvery: 1000 } });
    cleanups.push(() => h.close());
    const src = h.src.path;
    mkdirSync(join(src, "bin"));
    chmodSync(join(src, "bin"), 0o2775);
    for (const [name, mode] of [["su", 0o4755], ["wall", 0o2755], ["plain", 0o755]] as const) {
      writeFileSync(join(src, "bin", name), body);
      chmodSync(join(src, "bin", name), mode);
    }
    linkSync(join(src, "bin/su"), join(src, "bin/su-too"));
    await h.agent.start();
    await h.agent.drain("tools");

    const to = scratch();
    const result = await restoreAt(store, "tools", Date.now() + 1000, to);
    expect(result.failures).toEqual([]);
    expect([modeOf(to, "bin"), modeOf(to, "bin/su"), modeOf(to, "bin/su-too"), modeOf(to, "bin/wall"), modeOf(to, "bin/plain")]).toEqual(["2775", "755", "755", "755", "755"]);
    expect(result.setIdDropped).toEqual({ count: 3, paths: ["bin/su", "bin/su-too", "bin/wall"], reason: expect.stringMatching(/^owners are not kept: /) });
  });
});
