// Files touched before 1970 (old archives, FAT/SMB clocks, `touch -d @-1`) have negative mtimes: they replicate with
// their neighbours, verify equal, appear in a snapshot and in a moment of history, and restore with their mtime
// (to the microsecond, as every restore sets times). A record the applier cannot take names its file in the status,
// and a verify manifest's line names its entry, not only an index.

import { lstatSync, lutimesSync, mkdirSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it, vi } from "vitest";
import { unchangedInIndex } from "../../agent/capture.ts";
import { INVALIDATED_MTIME_NS } from "../../agent/journal-index.ts";
import { checkRestoredTree } from "../../agent/drill.ts";
import { runVerify } from "../../agent/operations.ts";
import { restoreAt } from "../../agent/restore-at.ts";
import { restoreSnapshot, snapshotRecoveryPoint } from "../../agent/restore.ts";
import { checkpointsPrefix } from "../../contract/history.ts";
import { META, dataKey, decodeMeta, dirKey } from "../../contract/layout.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { pendingFolderWrites } from "../../lambdas/applier/folder-writes.ts";
import { parseManifest } from "../../lambdas/applier/verify.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { takeSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { agentHarness } from "../support/harness.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

const SET = "old";

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

/** Seconds as utimes takes them before 1970: a numeric string (a negative number would mean "now"). */
const TIMES: [path: string, seconds: string][] = [
  ["times/pre1970", "-315619199.876543"],
  ["times/minus-1ns", "-1e-9"],
  ["times/minus-1s", "-1"],
  ["times/1960", "-315619200"],
  ["times/epoch", "0"],
  ["times/neighbour.txt", "1700000000.25"],
];

/** a / b rounded down (BigInt's division rounds toward zero). */
const floorDiv = (a: bigint, b: bigint) => (a >= 0n ? a / b : (a - b + 1n) / b);
/** What a restore keeps of a time: its microsecond (and so its second: what `ls -l` shows) and its side of the epoch. */
const kept = (ns: bigint) => ({ micros: floorDiv(ns, 1000n), second: floorDiv(ns, 1_000_000_000n), before1970: ns < 0n });

describe("mtimes before 1970", () => {
  it.each([
    ["history replayed from segments", 1000],
    ["history read from a checkpoint", 1],
  ])("replicate with their neighbours, verify equal, and restore from a snapshot and from history with their mtime (%s)", async (_name, checkpointEvery) => {
    const store = new MemoryStore({ versioned: true });
    const h = agentHarness(SET, {}, { store, history: { days: 7, checkpointEvery } });
    cleanups.push(() => h.close());
    const src = h.src.path;
    mkdirSync(join(src, "times"));
    for (const [path] of TIMES) writeFileSync(join(src, path), path);
    symlinkSync("pre1970", join(src, "times/link"));
    for (const [path, seconds] of TIMES) utimesSync(join(src, path), seconds, seconds);
    lutimesSync(join(src, "times/link"), "-100.25", "-100.25");
    utimesSync(join(src, "times"), "-86400", "-86400");
    const paths = ["times", "times/link", ...TIMES.map(([path]) => path)];
    const source = new Map(paths.map((path) => [path, lstatSync(join(src, path), { bigint: true }).mtimeNs]));
    const sourceNs = (path: string) => source.get(path) ?? expect.fail(`${path} was not stat'ed`);
    expect(source.get("times/minus-1ns")).toBe(-1n);
    expect(source.get("times/minus-1s")).toBe(-1_000_000_000n);
    expect(source.get("times/epoch")).toBe(0n);
    expect(sourceNs("times/pre1970") < 0n).toBe(true);

    await h.agent.start();
    await h.agent.drain(SET);
    // Every entry is on the target with its exact mtime, the neighbours too: no message was refused.
    // (A folder's write may wait in the folder-writes list: the bucket tells it to every reader.)
    const folder = decodeMeta((await store.head(dirKey(SET, "times")))?.meta)?.mtimeNs ?? (await pendingFolderWrites(store, SET)).get("times")?.mtimeNs;
    expect(folder).toBe(String(source.get("times")));
    for (const path of paths.slice(1)) expect(decodeMeta((await store.head(dataKey(SET, path)))?.meta)?.mtimeNs, path).toBe(String(source.get(path)));
    const applier = new Applier({ store, log: () => {} });
    const status = await applier.readStatus(SET);
    expect(status.lastRejected).toBeUndefined();
    expect(status.state).toBe("in-sync");

    // The verify manifest carries them too, and the live mirror matches it.
    const verified = await runVerify(h.operations(), SET, { deep: false, repair: false, orphans: "report" });
    expect(verified.report).toMatchObject({ missing: [], different: [] });

    const snapshot = await takeSnapshot(store, SET, { id: "s1", taskId: "t1", seq: null }, { now: new Date() });
    expect(snapshot.unreadableCount ?? 0).toBe(0);
    const out = tempDir("tidemark-pre1970-");
    cleanups.push(() => out.remove());
    const fromSnapshot = join(out.path, "snapshot");
    expect((await restoreSnapshot(store, snapshot, fromSnapshot)).failures).toEqual([]);
    if (checkpointEvery === 1) expect([...store.objects.keys()].some((key) => key.startsWith(checkpointsPrefix(SET)))).toBe(true);
    const fromHistory = join(out.path, "at");
    expect((await restoreAt(store, SET, Date.now() + 1000, fromHistory)).failures).toEqual([]);
    for (const to of [fromSnapshot, fromHistory]) {
      for (const path of paths) expect(kept(lstatSync(join(to, path), { bigint: true }).mtimeNs), `${to}: ${path}`).toEqual(kept(sourceNs(path)));
    }
    expect(statSync(join(fromSnapshot, "times/pre1970")).mtime.getUTCFullYear()).toBe(1960);
    // A drill compares the restored tree's mtimes as restore sets them: no difference before 1970 either.
    expect(await checkRestoredTree(fromSnapshot, (await snapshotRecoveryPoint(store, snapshot)).entries, [])).toEqual([]);
  });

  it("an invalidated index entry (a refused record's file) never matches a stat, 1 ns before 1970 included", async () => {
    const h = agentHarness(SET);
    cleanups.push(() => h.close());
    mkdirSync(join(h.src.path, "times"));
    const file = join(h.src.path, "times/minus-1ns");
    writeFileSync(file, "x");
    utimesSync(file, "-1e-9", "-1e-9");
    await h.agent.start();
    await h.agent.drain(SET);
    const st = lstatSync(file, { bigint: true });
    expect(st.mtimeNs).toBe(-1n);
    // The file was made moments ago: its ctime is recent (a scan would read it), so the checks look from an hour on.
    const now = Date.now.bind(Date);
    const later = vi.spyOn(Date, "now").mockImplementation(() => now() + 3_600_000);
    cleanups.push(() => later.mockRestore());
    // Not recently modified, so a scan would go by the stat alone.
    expect(unchangedInIndex(h.journal.index.childrenStat(SET, "times").get("times/minus-1ns"), st)).toBe(true);
    h.journal.index.invalidate(SET, "times/minus-1ns");
    expect(unchangedInIndex(h.journal.index.childrenStat(SET, "times").get("times/minus-1ns"), st)).toBe(false);
  });

  it('an old journal\'s invalidated entry ("-1", from before negative mtimes) is recaptured, a file 1 ns before 1970 included', async () => {
    const h = agentHarness(SET);
    cleanups.push(() => h.close());
    mkdirSync(join(h.src.path, "times"));
    const file = join(h.src.path, "times/minus-1ns");
    writeFileSync(file, "x");
    utimesSync(file, "-1e-9", "-1e-9");
    await h.agent.start();
    await h.agent.drain(SET);
    await h.shutdown();
    // As a journal of the previous version left it: its invalidated entry holds "-1", and no migration ran on it.
    const db = new DatabaseSync(join(h.state.path, "journal.db"));
    db.prepare("UPDATE entries SET mtime_ns = '-1', sha256 = NULL, blocks = NULL WHERE set_name = ? AND path = ?").run(SET, "times/minus-1ns");
    db.exec("PRAGMA user_version = 0");
    db.close();
    h.restart();
    const st = lstatSync(file, { bigint: true });
    expect(st.mtimeNs).toBe(-1n);
    // The file was made moments ago: its ctime is recent (a scan would read it), so the checks look from an hour on.
    const now = Date.now.bind(Date);
    const later = vi.spyOn(Date, "now").mockImplementation(() => now() + 3_600_000);
    cleanups.push(() => later.mockRestore());
    expect(h.journal.index.childrenStat(SET, "times").get("times/minus-1ns")?.mtimeNs).toBe(INVALIDATED_MTIME_NS);
    expect(unchangedInIndex(h.journal.index.childrenStat(SET, "times").get("times/minus-1ns"), st)).toBe(false);
    // Once per journal: an entry journaled at -1 ns after it keeps its stat across a restart.
    await h.agent.start();
    await h.agent.drain(SET);
    expect(h.journal.index.childrenStat(SET, "times").get("times/minus-1ns")?.mtimeNs).toBe("-1");
    await h.shutdown();
    h.restart();
    expect(unchangedInIndex(h.journal.index.childrenStat(SET, "times").get("times/minus-1ns"), st)).toBe(true);
  });

  it("a record the applier cannot take names its file in the status, not only its index", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "ok", "fine")])));
    const records = [putRecord(2, "times/neighbour.txt", "n"), { ...putRecord(3, "times/odd", "o"), mtimeNs: "-0" }];
    const outcome = await applier.applyMessage(signedIncoming("m2", SET, messageBody(SET, records)));
    expect(outcome.kind).toBe("rejected");
    const status = await applier.readStatus(SET);
    expect(status.lastRejected?.error).toMatch(/^invalid message: records\.1\.mtimeNs \(path "times\/odd"\): mtimeNs must be/);
  });

  it("a live-mirror object's metadata takes an mtime as the wire does: -0, -01 or 29 digits are not tidemark's", () => {
    const meta = (mtimeNs: string) => decodeMeta({ [META.kind]: "file", [META.mode]: "644", [META.mtimeNs]: mtimeNs })?.mtimeNs;
    expect(meta("-1")).toBe("-1");
    expect(meta(`-${"9".repeat(28)}`)).toBe(`-${"9".repeat(28)}`);
    for (const odd of ["-0", "-01", "9".repeat(29), ""]) expect(meta(odd), odd).toBeUndefined();
  });

  it("a verify manifest takes negative mtimes, and a line it refuses names its entry's path and field", () => {
    const line = (entry: object) => JSON.stringify({ path: "times/pre1970", kind: "file", size: 3, mode: 0o644, sha256: "0".repeat(64), ...entry });
    expect(parseManifest(gzipSync(`${line({ mtimeNs: "-315619200000000000" })}\n${line({ path: "e", mtimeNs: "-1" })}\n`))).toHaveLength(2);
    expect(() => parseManifest(gzipSync(`${line({ path: "a", mtimeNs: "1" })}\n${line({ mtimeNs: "-0" })}\n`))).toThrow(
      /^verify manifest line 2 \(path "times\/pre1970"\): mtimeNs: mtimeNs must be/,
    );
  });
});
