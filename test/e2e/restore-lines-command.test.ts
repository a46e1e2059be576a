// `tidemark restore` as an operator reads it, against the local cloud: a
// snapshot that left out more entries than its summary names (the first 100)
// has each named one listed and the rest counted on one "N more entries" line,
// the total says how many were not restored (a summary naming none of them
// says where the names are); entries left alone past the 50
// listed are counted the same way; and --json says how the bytes were read (no
// proxy or CA bundle here: direct signed GETs). A drill of that snapshot counts
// the unnamed ones on a line of their own too. A set-uid file comes back
// without its bit, which the restore and the drill say on a note line (and
// --json in setIdDropped) without failing; --keep-set-id gives the bit back.

import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { tidemark } from "../support/cli.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { linkProblems, oneFileSnapshot } from "../support/snapshots.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
const work = tempDir();
let config: string;

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(join(work.path, "src"));
  config = cloud.writeConfig(work.path, [{ name: "s", path: "src" }]);
  await oneFileSnapshot(cloud.store, { id: "big", path: "kept.txt", content: "kept", unreadable: linkProblems(100), unreadableCount: 103 });
  await oneFileSnapshot(cloud.store, { id: "unnamed", path: "kept.txt", content: "kept", unreadable: [], unreadableCount: 2, takenAt: "2025-06-01T00:00:00.000Z" });
  await oneFileSnapshot(cloud.store, { id: "suid", path: "tool", content: "#!/bin/sh\n", mode: 0o4755, takenAt: "2025-01-01T00:00:00.000Z" });
});

afterAll(async () => {
  await cloud?.stop();
  work.remove();
});

it("lists the named entries not restored, counts the others on one line, and totals them", async () => {
  const to = join(work.path, "restored");
  const restore = await tidemark(["restore", "s", "--snapshot", "big", "--to", to, "--config", config]);
  expect(restore.code).toBe(3);
  expect(readFileSync(join(to, "kept.txt"), "utf8")).toBe("kept");
  const lines = restore.stderr.trim().split("\n");
  expect(lines[0]).toBe("snapshot big is INCOMPLETE: 103 entries were left out when it was taken; they are not restored");
  expect(lines.filter((line) => /^not restored: "link\d{3}": left out of snapshot big when it was taken: altered$/.test(line))).toHaveLength(100);
  expect(lines.at(-2)).toBe("not restored: 3 more entries left out of snapshot big when it was taken; its summary names only the 100 above");
  expect(lines.at(-1)).toBe("103 entries not restored; everything else was");
  expect(restore.stdout).toMatch(/^restored snapshot big of set s to .*: 1 files/);
});

it("says where the names are when the summary names none of the entries left out", async () => {
  const restore = await tidemark(["restore", "s", "--snapshot", "unnamed", "--to", join(work.path, "unnamed"), "--config", config]);
  expect(restore.code).toBe(3);
  const lines = restore.stderr.trim().split("\n");
  expect(lines.at(-2)).toBe(
    "not restored: 2 entries left out of snapshot unnamed when it was taken; its summary names none of them (`tidemark status s` on the source names the entries it does not replicate)",
  );
  expect(lines.at(-1)).toBe("2 entries not restored; everything else was");
});

it("lists the first 50 entries it left alone and counts the rest on one line", async () => {
  const to = join(work.path, "not-empty");
  mkdirSync(to);
  for (let i = 0; i < 52; i++) writeFileSync(join(to, `extra${String(i).padStart(2, "0")}.txt`), "was here");
  const restore = await tidemark(["restore", "s", "--snapshot", "big", "--to", to, "--force", "--config", config]);
  expect(restore.code).toBe(3);
  const lines = restore.stdout.trim().split("\n");
  expect(lines).toContain("left alone, not in the snapshot (--delete removes them): 52 entries");
  expect(lines.filter((line) => /^ {2}"extra\d{2}\.txt"$/.test(line))).toHaveLength(50);
  expect(lines.at(-1)).toBe("  ... and 2 more (--json lists them all)");
});

it("says in --json how the bytes were read, with the count of unnamed left-out entries", async () => {
  const restore = await tidemark(["restore", "s", "--snapshot", "big", "--to", join(work.path, "as-json"), "--json", "--config", config]);
  expect(restore.code).toBe(3);
  const result = JSON.parse(restore.stdout) as { reads: string; leftOutUnnamed: number; failures: unknown[]; files: number };
  expect(result).toMatchObject({ reads: "direct", leftOutUnnamed: 3, files: 1 });
  expect(result.failures).toHaveLength(100);
});

it("drills that snapshot: the entries its summary names are listed, the rest counted on one line", async () => {
  const drill = await tidemark(["drill", "s", "--snapshot", "big", "--config", config]);
  expect(drill.code, drill.stderr).toBe(3);
  const lines = drill.stdout.trim().split("\n");
  expect(lines[0]).toMatch(/^drill \S+ of set s: FAILED$/);
  expect(lines).toContain("  100 entries do not match the recovery point:");
  expect(lines).toContain("  and 3 more entries left out of snapshot big when it was taken, which its summary does not name: not restored either");
});

const SET_ID_NOTE =
  'note: set-uid/set-gid bits not restored on 1 file(s) ("tool"): owners are not kept: restored files belong to the user running the restore (root when run as root), so a file set-uid or set-gid on the source would run as that user, not as its owner there; --keep-set-id keeps them';

it("restores a set-uid file without its bit, says so on a note line and in --json, and exits 0; --keep-set-id gives the bit back", async () => {
  const to = join(work.path, "set-id");
  const restore = await tidemark(["restore", "s", "--snapshot", "suid", "--to", to, "--config", config]);
  expect(restore.stderr).not.toMatch(/not restored/);
  expect(restore.code).toBe(0);
  expect(restore.stdout.trim().split("\n")).toContain(SET_ID_NOTE);
  expect(statSync(join(to, "tool")).mode & 0o7777).toBe(0o755);

  const json = await tidemark(["restore", "s", "--snapshot", "suid", "--to", join(work.path, "set-id-json"), "--json", "--config", config]);
  expect(json.code).toBe(0);
  expect(JSON.parse(json.stdout)).toMatchObject({ files: 1, failures: [], setIdDropped: { count: 1, paths: ["tool"], reason: expect.stringMatching(/^owners are not kept: /) } });

  const kept = join(work.path, "set-id-kept");
  const keep = await tidemark(["restore", "s", "--snapshot", "suid", "--to", kept, "--keep-set-id", "--json", "--config", config]);
  expect(keep.code).toBe(0);
  expect(JSON.parse(keep.stdout)).not.toHaveProperty("setIdDropped");
  expect(statSync(join(kept, "tool")).mode & 0o7777).toBe(0o4755);
});

it("drills a snapshot holding a set-uid file: it passes, with the dropped bit on a note line and in --json", async () => {
  const drill = await tidemark(["drill", "s", "--snapshot", "suid", "--config", config]);
  expect(drill.code, drill.stderr).toBe(0);
  const lines = drill.stdout.trim().split("\n");
  expect(lines[0]).toMatch(/^drill \S+ of set s: PASSED$/);
  expect(lines).toContain(`  ${SET_ID_NOTE.replace("; --keep-set-id keeps them", "; as every restore does, so the comparison expects it")}`);
  const json = await tidemark(["drill", "s", "--snapshot", "suid", "--json", "--config", config]);
  expect(json.code, json.stderr).toBe(0);
  expect(JSON.parse(json.stdout)).toMatchObject({ passed: true, problemCount: 0, setIdDropped: { count: 1, paths: ["tool"] } });
});
