// A journal lost while the target already holds the set (issue 17): the
// restarted agent compares every source file with the target's live object
// (its SHA-256 and size) and sends only what differs, instead of the whole
// tree again (last session's walk: 219 MiB for a 400 MiB tree the target held
// exactly). The target still ends equal to the source, deletions included.

import { createHash, randomBytes } from "node:crypto";
import { chmodSync, lstatSync, mkdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { recoverSet } from "../../agent/operations.ts";
import { seedIndexFromTarget, targetFileReader, type TargetFileLookup } from "../../agent/recovery-baseline.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "nm";
const BIG_FILE_BYTES = 6 * 1024 * 1024;
let h: Harness;

afterEach(async () => {
  await h.close();
});

/** Files modified moments before the comparison hashes them are never taken as held (their stat cannot prove it): dated an hour ago. */
const HOUR_AGO = new Date(Date.now() - 3_600_000);

/** A node_modules-like tree: 320 small files in nested folders, one multi-MiB file, a symlink and an empty folder. Returns its bytes. */
function buildTree(root: string): number {
  const random = seededRandom(17);
  let bytes = 0;
  for (let p = 0; p < 16; p++) {
    for (let f = 0; f < 20; f++) {
      const dir = join(root, "node_modules", `pkg${p}`, f % 2 === 0 ? "lib" : "dist/esm");
      mkdirSync(dir, { recursive: true });
      const body = randomBytes(500 + random(6000));
      writeFileSync(join(dir, `m${f}.js`), body);
      utimesSync(join(dir, `m${f}.js`), HOUR_AGO, HOUR_AGO);
      bytes += body.length;
    }
  }
  const big = randomBytes(BIG_FILE_BYTES);
  writeFileSync(join(root, "node_modules", "big.bin"), big);
  utimesSync(join(root, "node_modules", "big.bin"), HOUR_AGO, HOUR_AGO);
  symlinkSync("pkg0/lib/m0.js", join(root, "node_modules", "main.js"));
  mkdirSync(join(root, "empty"));
  return bytes + big.length;
}

/** The agent harness with the runtime's recovery: a diff mirror (deleting what the source no longer holds), and the target's live files to compare with. */
function restartWithRecovery(lookup: TargetFileLookup): { recovered: () => Promise<void> } {
  let recovering: Promise<void> | undefined;
  h.restart({
    targetStatus: (set) => readSetStatus(h.store, set),
    targetFile: lookup,
    recover: (set, reason) => {
      recovering = recoverSet(h.operations(), set, reason, "diff", "report");
      return recovering;
    },
  });
  return {
    recovered: async () => {
      expect(recovering).toBeDefined();
      await recovering;
    },
  };
}

function sentSoFar(): number {
  return h.transport.bodies.reduce((sum, body) => sum + Buffer.byteLength(body), 0) + h.transport.stagedBytes;
}

it("after a lost journal, sends only the files that differ (and metadata-only updates), and the target ends equal to the source", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  const src = h.src.path;
  const treeBytes = buildTree(src);
  await h.agent.start();
  await h.agent.drain(SET);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src));
  const generation = (await readSetStatus(store, SET)).generation;

  // The whole state folder goes (the harness's key stays with its transport, as a kept owner key would).
  await h.shutdown();
  rmSync(h.state.path, { recursive: true, force: true });
  mkdirSync(h.state.path);
  const m = (p: number, f: number) => join(src, "node_modules", `pkg${p}`, f % 2 === 0 ? "lib" : "dist/esm", `m${f}.js`);
  const changed = [randomBytes(3000), randomBytes(4000), randomBytes(100)];
  writeFileSync(m(1, 2), changed[0] ?? "");
  writeFileSync(m(2, 3), changed[1] ?? "");
  writeFileSync(join(src, "node_modules", "pkg3", "new.js"), changed[2] ?? "");
  rmSync(m(4, 4));
  rmSync(join(src, "node_modules", "pkg5"), { recursive: true });
  // Same bytes, other mtime or mode: metadata-only updates, not the content again.
  utimesSync(m(6, 6), new Date(2020, 0, 1), new Date(2020, 0, 1));
  chmodSync(m(7, 7), 0o600);
  utimesSync(join(src, "node_modules", "big.bin"), new Date(2021, 0, 1), new Date(2021, 0, 1));
  const changedBytes = changed.reduce((sum, b) => sum + b.length, 0);

  const before = sentSoFar();
  const stagedBefore = h.transport.stagedBytes;
  const recovery = restartWithRecovery(targetFileReader(store));
  await h.agent.start();
  await recovery.recovered();
  await h.agent.drain(SET);
  const sent = sentSoFar() - before;

  expect(await pictureOfTarget(store, SET, { dirMtimes: true })).toEqual(await pictureOfSource(src, { dirMtimes: true }));
  const status = await readSetStatus(store, SET);
  expect(status).toMatchObject({ state: "in-sync", generation: h.journal.sets.generation(SET).id });
  expect(status.generation).not.toBe(generation);
  // Far below the tree: the changed files, and records without content for the rest.
  expect(sent).toBeLessThan(treeBytes * 0.1 + changedBytes);
  // The large file's new mtime reached the target without its bytes.
  expect(h.transport.stagedBytes - stagedBefore).toBeLessThan(BIG_FILE_BYTES);
});

it("takes a file as held only when the target's SHA-256 and size match it; other metadata travels without content", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  const files = { "same.txt": "held exactly", "other-sha.txt": "same size, other", "other-size.txt": "longer than the target's", "missing.txt": "not on the target", "touched.txt": "same bytes, new mtime" };
  for (const [name, body] of Object.entries(files)) {
    writeFileSync(join(src, name), body);
    utimesSync(join(src, name), HOUR_AGO, HOUR_AGO);
  }
  const stat = (name: string) => lstatSync(join(src, name), { bigint: true });
  const held = (name: string, extra: Partial<{ size: number; sha256: string; mtimeNs: string }> = {}) => ({
    size: Buffer.byteLength(files[name as keyof typeof files]),
    sha256: createHash("sha256").update(files[name as keyof typeof files]).digest("hex"),
    mode: Number(stat(name).mode & 0o7777n),
    mtimeNs: stat(name).mtimeNs.toString(),
    ...extra,
  });
  const target = new Map([
    ["same.txt", held("same.txt")],
    ["other-sha.txt", held("other-sha.txt", { sha256: "0".repeat(64) })],
    ["other-size.txt", held("other-size.txt", { size: 3 })],
    ["touched.txt", held("touched.txt", { mtimeNs: "1000000000" })],
  ]);
  const looked: string[] = [];
  const lookup: TargetFileLookup = async (_set, path) => {
    looked.push(path);
    return target.get(path);
  };

  const report = await seedIndexFromTarget(h.journal, { name: SET, root: src, exclude: [] }, lookup);
  expect(report).toMatchObject({ files: 5, same: 1, metadataOnly: 1, differ: 3 });
  // A size that differs proves another content without reading the file.
  expect(report.bytesRead).toBe(Buffer.byteLength(files["same.txt"]) + Buffer.byteLength(files["other-sha.txt"]) + Buffer.byteLength(files["touched.txt"]));
  expect(looked.sort()).toEqual(Object.keys(files).sort());
  expect(h.journal.index.entry(SET, "same.txt")).toMatchObject({ kind: "file", sha256: held("same.txt").sha256, mtimeNs: held("same.txt").mtimeNs });
  for (const name of ["other-sha.txt", "other-size.txt", "missing.txt"]) expect(h.journal.index.entry(SET, name)).toBeUndefined();
  // Nothing journaled for the file held exactly; the touched one as a put carrying no bytes over its own content.
  const records = h.journal.pending(SET, 0, 100);
  expect(records).toHaveLength(1);
  expect(records[0]).toMatchObject({ op: "put", path: "touched.txt", mtimeNs: stat("touched.txt").mtimeNs.toString(), delta: { base: held("touched.txt").sha256, blocks: [], ranges: [] } });
  const scan = await h.agent.scan(SET);
  // The scan behind sends the three that differ, whole, and nothing else.
  expect(scan.changes).toBe(3);
});

it("ends the comparison early when the agent stops while it starts: nothing more is read, the scan sends the rest", async () => {
  h = agentHarness(SET);
  for (let i = 0; i < 5; i++) writeFileSync(join(h.src.path, `f${i}.txt`), `file ${i}`);
  const looked: string[] = [];
  const lookup: TargetFileLookup = async (_set, path) => {
    looked.push(path);
    return undefined;
  };
  const stopping = new AbortController();
  stopping.abort();
  const report = await seedIndexFromTarget(h.journal, { name: SET, root: h.src.path, exclude: [] }, lookup, stopping.signal);
  expect(report.files).toBe(0);
  expect(looked).toEqual([]);
  expect((await h.agent.scan(SET)).changes).toBe(5);
});

it("compares nothing unless the new generation's resync is journaled ahead: records of the generation never precede it", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  writeFileSync(join(h.src.path, "a.txt"), "held by the target");
  await h.agent.start();
  await h.agent.drain(SET);
  await h.shutdown();
  rmSync(h.state.path, { recursive: true, force: true });
  mkdirSync(h.state.path);
  const looked: string[] = [];
  const lookup = targetFileReader(store);
  // A recovery that journals no resync (yet): the comparison would journal ahead of it, so it is not made.
  h.restart({
    targetStatus: (set) => readSetStatus(store, set),
    targetFile: async (set, path) => {
      looked.push(path);
      return lookup(set, path);
    },
    recover: async () => undefined,
  });
  await h.agent.start();
  expect(looked).toEqual([]);
  expect(h.journal.pending(SET, 0, 10).map((r) => r.op)).toEqual(["put"]);
});
