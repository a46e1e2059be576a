// A folder moved within the set: its large files travel as renames (the
// target moves their objects), never their content again, each before the
// deletes of the folder it left; small files travel again inline.

import { randomBytes } from "node:crypto";
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import type { Change } from "../../agent/journal.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "app";
const MiB = 1024 * 1024;
const LARGE = 3 * MiB;

describe("a folder moved within the set", () => {
  let h: Harness;

  const write = (path: string, content: Buffer | string) => writeFileSync(join(h.src.path, path), content);
  const converge = async () => {
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  };
  /** Hints the paths as the watcher would and journals them; the records journaled, in order. */
  const journaled = async (...paths: string[]): Promise<Change[]> => {
    const { sentSeq } = h.journal.sets.counters(SET);
    for (const path of paths) h.agent.hint(SET, path);
    await h.agent.processHints(SET);
    return h.journal.pending(SET, sentSeq, 100_000);
  };
  const renamesIn = (records: readonly Change[]) => records.flatMap((change) => (change.op === "rename" ? [{ from: change.from, to: change.to }] : []));
  const index = (records: readonly Change[], match: (change: Change) => boolean) => records.findIndex(match);

  beforeEach(async () => {
    h = agentHarness(SET);
    mkdirSync(join(h.src.path, "lib/deep"), { recursive: true });
    write("lib/db.bin", randomBytes(LARGE));
    write("lib/deep/model.bin", randomBytes(BLOCK_SIZE));
    for (let i = 0; i < 20; i++) write(`lib/f${i}.js`, `module.exports = ${i};\n`);
    write("lib/deep/readme.txt", "small");
    write("other.txt", "stays");
    await h.agent.start();
    await converge();
  });

  afterEach(() => h.close());

  it("renames its large files before deleting the old folder, and the target ends exact without their content sent again", async () => {
    const before = h.sent();
    renameSync(join(h.src.path, "lib"), join(h.src.path, "lib2"));
    const records = await journaled("lib", "lib2");

    expect(renamesIn(records).sort((a, b) => (a.from < b.from ? -1 : 1))).toEqual([
      { from: "lib/db.bin", to: "lib2/db.bin" },
      { from: "lib/deep/model.bin", to: "lib2/deep/model.bin" },
    ]);
    // No put carries a large file's content again.
    expect(records.filter((change) => change.op === "put" && change.size >= BLOCK_SIZE)).toEqual([]);
    // Small files travel again as puts; the old folder's entries are deleted, after every rename of what it held.
    expect(records.filter((change) => change.op === "put" && change.path.startsWith("lib2/"))).toHaveLength(21);
    const lastRename = Math.max(...records.flatMap((change, at) => (change.op === "rename" ? [at] : [])));
    const firstOldDelete = index(records, (change) => change.op === "delete" && (change.path === "lib" || change.path.startsWith("lib/")));
    expect(firstOldDelete).toBeGreaterThan(lastRename);
    expect(index(records, (change) => change.op === "delete" && change.path === "lib")).toBeGreaterThan(-1);
    // The renamed files are not deleted (their source left the index with the rename).
    expect(records.filter((change) => change.op === "delete" && (change.path === "lib/db.bin" || change.path === "lib/deep/model.bin"))).toEqual([]);
    // The puts read for the matching were dropped with their spool copies.
    expect(readdirSync(h.journal.spoolDir)).toEqual([]);

    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
    expect((await readSetStatus(h.store, SET)).state).toBe("in-sync");
    expect(h.sent() - before).toBeLessThan(BLOCK_SIZE / 4);
    // The index moved with them: a later scan finds nothing to send.
    expect((await h.agent.scan(SET)).changes).toBe(0);
  });

  it("finds the move in a barrier scan too (the agent was not watching), deleting the old folder after the renames", async () => {
    const before = h.sent();
    renameSync(join(h.src.path, "lib"), join(h.src.path, "lib2"));
    const { sentSeq } = h.journal.sets.counters(SET);
    await h.agent.scan(SET);
    const records: Change[] = h.journal.pending(SET, sentSeq, 100_000);
    expect(renamesIn(records).sort((a, b) => (a.from < b.from ? -1 : 1))).toEqual([
      { from: "lib/db.bin", to: "lib2/db.bin" },
      { from: "lib/deep/model.bin", to: "lib2/deep/model.bin" },
    ]);
    const lastRename = Math.max(...records.flatMap((change, at) => (change.op === "rename" ? [at] : [])));
    expect(index(records, (change) => change.op === "delete" && change.path.startsWith("lib/"))).toBeGreaterThan(lastRename);
    expect(records.filter((change) => change.op === "put" && change.size >= BLOCK_SIZE)).toEqual([]);
    expect(readdirSync(h.journal.spoolDir)).toEqual([]);
    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
    expect(h.sent() - before).toBeLessThan(BLOCK_SIZE / 4);
  });

  it("moves a folder into another folder of the set the same way", async () => {
    mkdirSync(join(h.src.path, "vendor"));
    await converge();
    renameSync(join(h.src.path, "lib/deep"), join(h.src.path, "vendor/deep"));
    const records = await journaled("lib/deep", "vendor/deep");
    expect(renamesIn(records)).toEqual([{ from: "lib/deep/model.bin", to: "vendor/deep/model.bin" }]);
    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  });

  it("sends a large file whose content changed in the move, and deletes a folder moved out of the set", async () => {
    renameSync(join(h.src.path, "lib"), join(h.src.path, "lib2"));
    write("lib2/db.bin", randomBytes(LARGE));
    const records = await journaled("lib", "lib2");
    expect(renamesIn(records)).toEqual([{ from: "lib/deep/model.bin", to: "lib2/deep/model.bin" }]);
    expect(records.filter((change) => change.op === "put" && change.path === "lib2/db.bin")).toHaveLength(1);
    expect(index(records, (change) => change.op === "delete" && change.path === "lib/db.bin")).toBeGreaterThan(-1);
    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));

    rmSync(join(h.src.path, "lib2"), { recursive: true });
    const gone = await journaled("lib2");
    expect(gone.filter((change) => change.op !== "delete")).toEqual([]);
    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  });
});

describe("a folder moved ahead of where it was, found by a barrier scan", () => {
  let h: Harness;
  afterEach(() => h.close());

  it("renames a file of a block to a megabyte (it travels inline) though the scan reads its new folder before it finds the old one gone", async () => {
    h = agentHarness(SET);
    mkdirSync(join(h.src.path, "lib/deep"), { recursive: true });
    writeFileSync(join(h.src.path, "lib/deep/model.bin"), randomBytes(BLOCK_SIZE));
    await h.agent.start();
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    // "a" sorts before "lib": the scan reaches a/deep before it lists lib and finds lib/deep gone.
    mkdirSync(join(h.src.path, "a"));
    renameSync(join(h.src.path, "lib/deep"), join(h.src.path, "a/deep"));
    const { sentSeq } = h.journal.sets.counters(SET);
    await h.agent.scan(SET);
    const records: Change[] = h.journal.pending(SET, sentSeq, 100_000);
    expect(records.flatMap((change) => (change.op === "rename" ? [{ from: change.from, to: change.to }] : []))).toEqual([{ from: "lib/deep/model.bin", to: "a/deep/model.bin" }]);
    expect(records.filter((change) => change.op === "put" && change.size >= BLOCK_SIZE)).toEqual([]);
    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  });
});
