// A file rewritten in place with the same size and its mtime put back (cp -p, rsync -a --inplace, touch -r, tar x,
// ransomware keeping timestamps): size, mtime and mode are as indexed, so it was never read again, by the watcher's
// capture nor by a barrier scan, and snapshots were "verified" with the old bytes. The ctime (which no user can set)
// and the inode are indexed too now. The clock is put an hour ahead so no file counts as just modified (the racy
// window hashes those anyway): what finds the rewrite here is the ctime alone.

import { createHash } from "node:crypto";
import { closeSync, lstatSync, openSync, readFileSync, utimesSync, writeFileSync, writeSync, type BigIntStats } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { unchangedInIndex } from "../../agent/capture.ts";
import { changedBehindStatLines, DIFFERENCES_FOUND, verifyExitCode } from "../../agent/commands/verify.ts";
import { runVerify } from "../../agent/operations.ts";
import { seedIndexFromTarget, type TargetFileLookup } from "../../agent/recovery-baseline.ts";
import { restoreSnapshot } from "../../agent/restore.ts";
import type * as SetFiles from "../../agent/set-files.ts";
import { snapshotIdFor, TaskFieldsSchema } from "../../contract/tasks.ts";
import { readSnapshot } from "../../lambdas/target/index.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

/** Reads of source files' content: every open of one (whole small files, hashing, spooling: agent/set-files.ts). */
const reads = { count: 0 };

vi.mock("../../agent/set-files.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof SetFiles>();
  return {
    ...actual,
    openInSet: (...args: Parameters<typeof actual.openInSet>) => {
      reads.count += 1;
      return actual.openInSet(...args);
    },
  };
});

const SET = "app";
const WHEN = new Date("2026-01-02T03:04:05Z");
let h: Harness;

beforeEach(() => {
  const now = Date.now.bind(Date);
  vi.spyOn(Date, "now").mockImplementation(() => now() + 3_600_000);
  reads.count = 0;
  h = agentHarness(SET);
});

afterEach(async () => {
  await h.close();
  vi.restoreAllMocks();
});

function writeOld(name: string, text: string): void {
  const path = join(h.src.path, name);
  writeFileSync(path, text);
  utimesSync(path, WHEN, WHEN);
}

/** New bytes of the same length, written in place, and the times put back as they were. */
function rewriteKeepingStat(name: string, text: string): void {
  const path = join(h.src.path, name);
  expect(Buffer.byteLength(text)).toBe(readFileSync(path).length);
  const fd = openSync(path, "r+");
  try {
    writeSync(fd, text, 0);
  } finally {
    closeSync(fd);
  }
  utimesSync(path, WHEN, WHEN);
}

const onTarget = async (name: string) => (await h.store.get(`data/${SET}/${name}`))?.body.toString();

async function mirrored(): Promise<void> {
  writeOld("a.txt", "abcdef");
  writeOld("b.txt", "untouched");
  await h.agent.start();
  await h.agent.drain(SET);
  expect(await onTarget("a.txt")).toBe("abcdef");
}

it("sends a file the watcher reports, rewritten with the same size and its mtime put back", async () => {
  await mirrored();
  rewriteKeepingStat("a.txt", "fedcba");
  h.agent.hint(SET, "a.txt");
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  expect(await onTarget("a.txt")).toBe("fedcba");
});

it("sends it when the rewrite happened while the agent was stopped (the start's scan)", async () => {
  await mirrored();
  await h.shutdown();
  rewriteKeepingStat("a.txt", "fedcba");
  h.restart();
  await h.agent.start();
  await h.agent.drain(SET);
  expect(await onTarget("a.txt")).toBe("fedcba");
  expect(await onTarget("b.txt")).toBe("untouched");
});

it("a marker's snapshot holds the new content", async () => {
  await mirrored();
  rewriteKeepingStat("a.txt", "fedcba");
  const queued = await h.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  expect(queued.scan.changes).toBe(1);
  await h.agent.drain(SET);
  const summary = await readSnapshot(h.store, SET, snapshotIdFor(queued.id));
  const to = tempDir("tidemark-rewrite-");
  try {
    await restoreSnapshot(h.store, summary, to.path);
    expect(readFileSync(join(to.path, "a.txt"), "utf8")).toBe("fedcba");
  } finally {
    to.remove();
  }
});

it("a rewrite with the same bytes costs a read of the file and journals nothing", async () => {
  await mirrored();
  const sent = h.journal.sets.counters(SET);
  rewriteKeepingStat("b.txt", "untouched");
  reads.count = 0;
  const scan = await h.agent.scan(SET);
  expect(reads.count).toBe(1);
  expect(scan.changes).toBe(0);
  expect(h.journal.sets.counters(SET)).toEqual(sent);
  // The new ctime is recorded: the next scan reads nothing.
  reads.count = 0;
  await h.agent.scan(SET);
  expect(reads.count).toBe(0);
});

/** The journal as an agent from before ctimes and inodes were indexed left it (the harness's journal closed). */
function asOlderJournal(): void {
  const db = new DatabaseSync(join(h.state.path, "journal.db"));
  db.exec(`DROP INDEX entries_scan_by_parent;
    ALTER TABLE entries DROP COLUMN ctime_ns; ALTER TABLE entries DROP COLUMN ino;
    CREATE INDEX entries_stat_by_parent ON entries (set_name, parent, path, kind, size, mode, mtime_ns);`);
  db.close();
}

it("verify --deep names the files it found changed behind an unchanged stat, and exits non-zero", async () => {
  await mirrored();
  await h.shutdown();
  // Rewritten before the upgrade: the upgraded journal's first scan takes the new ctime unread (the limit of an upgrade).
  rewriteKeepingStat("a.txt", "fedcba");
  asOlderJournal();
  h.restart();
  await h.agent.start();
  await h.agent.drain(SET);
  expect(await onTarget("a.txt")).toBe("abcdef");

  const result = await runVerify(h.operations(), SET, { deep: true, repair: false, orphans: "report" });
  expect(result.changedBehindStat).toEqual({ count: 1, paths: ["a.txt"] });
  expect(result.report).toMatchObject({ missing: [], different: [], extra: [] });
  expect(await onTarget("a.txt")).toBe("fedcba");
  expect(changedBehindStatLines(result.changedBehindStat ?? { count: 0, paths: [] })).toEqual([
    "1 file had changed behind an unchanged size and mtime: journaled now, ahead of this verification; snapshots taken before this may hold their old content",
    "  changed   a.txt",
  ]);
  const many = changedBehindStatLines({ count: 250, paths: Array.from({ length: 100 }, (_, i) => `f${i}`) });
  expect(many[0]).toMatch(/^250 files had changed behind/);
  expect(many.slice(-2)).toEqual(["  changed   f19", "  ... and 230 more"]);
  expect(verifyExitCode(result, false)).toBe(DIFFERENCES_FOUND);
  expect(verifyExitCode(result, true)).toBe(DIFFERENCES_FOUND);

  // A rewrite whose ctime shows is an ordinary change the scan finds, not one behind the stat.
  rewriteKeepingStat("a.txt", "abcdef");
  const again = await runVerify(h.operations(), SET, { deep: true, repair: false, orphans: "report" });
  expect(again.changedBehindStat).toEqual({ count: 0, paths: [] });
  expect(verifyExitCode(again, false)).toBe(0);
  expect(await onTarget("a.txt")).toBe("abcdef");
});

it("an upgraded journal without ctimes records them at the next scan without reading any file, then finds a rewrite", async () => {
  for (let i = 0; i < 20; i++) writeOld(`f${i}.txt`, `file ${i}`);
  await mirrored();
  await h.shutdown();
  asOlderJournal();

  h.restart();
  const files = [...h.journal.index.allEntries(SET)].filter((entry) => entry.kind === "file");
  expect(files).toHaveLength(22);
  expect(files.every((entry) => entry.ctimeNs === null && entry.ino === null)).toBe(true);
  reads.count = 0;
  await h.agent.start();
  expect(reads.count).toBe(0);
  expect([...h.journal.index.allEntries(SET)].filter((entry) => entry.kind === "file" && entry.ctimeNs === null)).toEqual([]);

  rewriteKeepingStat("f7.txt", "FILE 7");
  await h.agent.scan(SET);
  // Only that file: hashed against the index, then read into the journal.
  expect(reads.count).toBe(2);
  await h.agent.drain(SET);
  expect(await onTarget("f7.txt")).toBe("FILE 7");
});

it("a put journaled without a stamp is read at its next capture: a rewrite behind its stat in between is found", async () => {
  await mirrored();
  const known = h.journal.index.entry(SET, "a.txt");
  const sha256 = known?.sha256;
  if (!known || !sha256) throw new Error("a.txt not indexed");
  // As a put from elsewhere (a metadata put, a block repair of old) enters the index: the content was not read here.
  h.journal.atomically(() => h.journal.index.apply(SET, { op: "put", path: "a.txt", size: known.size, mode: known.mode, mtimeNs: known.mtimeNs, sha256, content: { bytes: new Uint8Array() } }));
  expect(h.journal.index.entry(SET, "a.txt")).toMatchObject({ ctimeNs: "0" });
  rewriteKeepingStat("a.txt", "fedcba");
  expect((await h.agent.scan(SET)).changes).toBe(1);
  await h.agent.drain(SET);
  expect(await onTarget("a.txt")).toBe("fedcba");
});

it("a lost journal's comparison indexes the stamp it read under: the next scan reads nothing, a rewrite behind the stat later is found", async () => {
  writeOld("a.txt", "abcdef");
  const st = lstatSync(join(h.src.path, "a.txt"), { bigint: true });
  const lookup: TargetFileLookup = async () => ({ size: 6, sha256: createHash("sha256").update("abcdef").digest("hex"), mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs.toString() });
  const report = await seedIndexFromTarget(h.journal, { name: SET, root: h.src.path, exclude: [] }, lookup);
  expect(report).toMatchObject({ same: 1 });
  expect(h.journal.index.entry(SET, "a.txt")).toMatchObject({ ctimeNs: st.ctimeNs.toString(), ino: st.ino.toString() });
  reads.count = 0;
  expect((await h.agent.scan(SET)).changes).toBe(0);
  expect(reads.count).toBe(0);
  rewriteKeepingStat("a.txt", "fedcba");
  expect((await h.agent.scan(SET)).changes).toBe(1);
});

it("a file whose inode changed but not its ctime (a FUSE or CIFS mount after a cache eviction) is not read again; one whose ctime moved is", async () => {
  await mirrored();
  const known = h.journal.index.entry(SET, "b.txt");
  const st = lstatSync(join(h.src.path, "b.txt"), { bigint: true });
  const as = (changes: Partial<BigIntStats>) => Object.assign(Object.create(Object.getPrototypeOf(st) as object) as BigIntStats, st, changes);
  expect(unchangedInIndex(known, st)).toBe(true);
  expect(unchangedInIndex(known, as({ ino: st.ino + 1000n }))).toBe(true);
  expect(unchangedInIndex(known, as({ ctimeNs: st.ctimeNs + 1n }))).toBe(false);
});

it("a failed stamp write is dropped, never failing the scan: it costs a read at the next one", async () => {
  await mirrored();
  rewriteKeepingStat("b.txt", "untouched");
  const write = vi.spyOn(h.journal.index, "writeStamps").mockImplementationOnce(() => {
    throw new Error("disk I/O error");
  });
  reads.count = 0;
  expect((await h.agent.scan(SET)).changes).toBe(0);
  expect(write).toHaveBeenCalled();
  expect(reads.count).toBe(1);
  reads.count = 0;
  await h.agent.scan(SET);
  expect(reads.count).toBe(1);
});

it("an upgraded journal's watcher capture records an unchanged file's ctime without reading it", async () => {
  await mirrored();
  await h.shutdown();
  asOlderJournal();
  h.restart();
  expect(h.journal.index.entry(SET, "a.txt")).toMatchObject({ ctimeNs: null });
  reads.count = 0;
  h.agent.hint(SET, "a.txt");
  await h.agent.processHints(SET);
  h.journal.writeStamps();
  expect(reads.count).toBe(0);
  const st = lstatSync(join(h.src.path, "a.txt"), { bigint: true });
  expect(h.journal.index.entry(SET, "a.txt")).toMatchObject({ ctimeNs: st.ctimeNs.toString(), ino: st.ino.toString() });
});
