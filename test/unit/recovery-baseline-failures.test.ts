// The comparison with the target after a lost journal (recovery-baseline.ts)
// must cost no more than the file that fails: the agent's S3 client does not
// retry, so one failed HEAD among 100k, or one file that cannot be read, once
// ended the whole comparison and the rest of the tree was sent whole. A stop
// ends it between batches and before each file's hash, and a file modified
// moments before its hash is not taken as held (its stat cannot prove it).

import { createHash } from "node:crypto";
import { lstatSync, readFileSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import type * as SetFiles from "../../agent/set-files.ts";
import { seedIndexFromTarget, type TargetFile, type TargetFileLookup } from "../../agent/recovery-baseline.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

/** Absolute paths whose reads fail as a file without read permission would. */
const unreadable = new Set<string>();

vi.mock("../../agent/set-files.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof SetFiles>();
  return {
    ...actual,
    openInSet: (file: string) =>
      unreadable.has(file) ? Promise.reject(Object.assign(new Error(`EACCES: permission denied, open '${file}'`), { code: "EACCES" })) : actual.openInSet(file),
  };
});

const SET = "app";
const HOUR_AGO = new Date(Date.now() - 3_600_000);
let h: Harness;

afterEach(async () => {
  unreadable.clear();
  await h.close();
});

/** Writes the files, dated an hour ago (past the racy window), and returns the target's view of each as held exactly. */
function writeHeld(root: string, names: readonly string[]): Map<string, TargetFile> {
  const held = new Map<string, TargetFile>();
  for (const name of names) {
    const abs = join(root, name);
    writeFileSync(abs, `content of ${name}`);
    utimesSync(abs, HOUR_AGO, HOUR_AGO);
    const st = lstatSync(abs, { bigint: true });
    const bytes = readFileSync(abs);
    held.set(name, { size: bytes.length, sha256: createHash("sha256").update(bytes).digest("hex"), mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs.toString() });
  }
  return held;
}

it("a failed HEAD (after one retry) or an unreadable file differs for that file only: the rest is still compared", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  const held = writeHeld(src, ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt"]);
  unreadable.add(join(src, "b.txt"));
  const calls = new Map<string, number>();
  const lookup: TargetFileLookup = async (_set, path) => {
    const n = (calls.get(path) ?? 0) + 1;
    calls.set(path, n);
    // c.txt: one 503, then an answer; d.txt: never answers.
    if ((path === "c.txt" && n === 1) || path === "d.txt") throw new Error("503 Service Unavailable");
    return held.get(path);
  };

  const report = await seedIndexFromTarget(h.journal, { name: SET, root: src, exclude: [] }, lookup);
  expect(report).toMatchObject({ files: 5, same: 3, differ: 2, unreadable: 2 });
  for (const name of ["a.txt", "c.txt", "e.txt"]) expect(h.journal.index.entry(SET, name)).toMatchObject({ kind: "file", sha256: held.get(name)?.sha256 });
  for (const name of ["b.txt", "d.txt"]) expect(h.journal.index.entry(SET, name)).toBeUndefined();
  expect(calls.get("c.txt")).toBe(2);
  expect(calls.get("d.txt")).toBe(2);
});

it("does not take a file modified within the racy window of its hash as held", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  const held = writeHeld(src, ["old.txt", "fresh.txt"]);
  // Modified "moments ago" however slow the machine: a same-size rewrite within its timestamp tick could follow the hash.
  const soon = new Date(Date.now() + 60_000);
  utimesSync(join(src, "fresh.txt"), soon, soon);
  const fresh = lstatSync(join(src, "fresh.txt"), { bigint: true });
  const freshHeld = held.get("fresh.txt");
  if (freshHeld) held.set("fresh.txt", { ...freshHeld, mtimeNs: fresh.mtimeNs.toString() });

  const report = await seedIndexFromTarget(h.journal, { name: SET, root: src, exclude: [] }, async (_set, path) => held.get(path));
  expect(report).toMatchObject({ files: 2, same: 1, differ: 1 });
  expect(h.journal.index.entry(SET, "old.txt")).toBeDefined();
  expect(h.journal.index.entry(SET, "fresh.txt")).toBeUndefined();
  expect((await h.agent.scan(SET)).changes).toBe(1);
});

it("a stop ends the comparison between batches of one large folder, and before each file's hash", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  const names = Array.from({ length: 600 }, (_, i) => `f${i}.txt`);
  const held = writeHeld(src, names);
  const stopping = new AbortController();
  const looked: string[] = [];
  const lookup: TargetFileLookup = async (_set, path) => {
    looked.push(path);
    // The agent stops at the first HEAD, which still answers that the target holds the file.
    stopping.abort();
    return held.get(path);
  };

  const report = await seedIndexFromTarget(h.journal, { name: SET, root: src, exclude: [] }, lookup, stopping.signal);
  // At most the HEADs already under way when the stop came; none of the files was then hashed or indexed.
  expect(looked.length).toBeLessThan(names.length / 2);
  expect(report).toMatchObject({ files: 0, bytesRead: 0 });
  expect(h.journal.index.entryCount(SET)).toBe(0);
  expect((await h.agent.scan(SET)).changes).toBe(names.length);
});
