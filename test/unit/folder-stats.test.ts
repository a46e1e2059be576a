import { execFileSync } from "node:child_process";
import { lstatSync, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { folderWorkerOptions, readFolder, startFolderReader } from "../../agent/folder-stats.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir("tidemark-folder-");
});
afterEach(() => dir.remove());

it("lists a folder with each entry's lstat, as lstatSync gives it", async () => {
  writeFileSync(join(dir.path, "file"), "12345");
  mkdirSync(join(dir.path, "sub"), { mode: 0o750 });
  symlinkSync("file", join(dir.path, "link"));
  execFileSync("mkfifo", [join(dir.path, "fifo")]);
  writeFileSync(join(dir.path, "ünï 日本 😀"), "");
  const entries = await readFolder(dir.path);
  expect(entries.map((e) => e.name).sort()).toEqual(["file", "fifo", "link", "sub", "ünï 日本 😀"].sort());
  for (const { name, stat } of entries) {
    const expected = lstatSync(join(dir.path, name), { bigint: true });
    expect(stat, name).toBeDefined();
    expect([stat?.isFile(), stat?.isDirectory(), stat?.isSymbolicLink()], name).toEqual([expected.isFile(), expected.isDirectory(), expected.isSymbolicLink()]);
    expect([stat?.mode, stat?.size, stat?.mtimeNs], name).toEqual([expected.mode, expected.size, expected.mtimeNs]);
  }
});

it("fails like readdir for a folder that is gone or is not a folder", async () => {
  await expect(readFolder(join(dir.path, "missing"))).rejects.toMatchObject({ code: "ENOENT" });
  writeFileSync(join(dir.path, "plain"), "x");
  await expect(readFolder(join(dir.path, "plain"))).rejects.toMatchObject({ code: "ENOTDIR" });
});

it("answers many reads at once, each with its own folder", async () => {
  for (let i = 0; i < 20; i++) {
    mkdirSync(join(dir.path, `d${i}`));
    for (let f = 0; f <= i; f++) writeFileSync(join(dir.path, `d${i}`, `f${f}`), "x".repeat(f));
  }
  const listings = await Promise.all(Array.from({ length: 20 }, (_, i) => readFolder(join(dir.path, `d${i}`))));
  listings.forEach((entries, i) => {
    expect(entries).toHaveLength(i + 1);
    for (const { name, stat } of entries) expect(stat?.size).toBe(BigInt(Number(name.slice(1))));
  });
});

it("starts its worker with the compile cache the agent turned on (a worker does not inherit it), and with the same environment otherwise", () => {
  const cached = folderWorkerOptions("/var/cache/node-compile");
  expect(cached.env).toEqual({ ...process.env, NODE_COMPILE_CACHE: "/var/cache/node-compile" });
  expect(cached.workerData).toEqual(folderWorkerOptions(undefined).workerData);
  // Without a cache the worker gets the default: the environment as it is.
  expect(folderWorkerOptions(undefined).env).toBeUndefined();
});

it("starts its worker before any folder is asked for (`tidemark run` does first thing), and reads through it then", async () => {
  await startFolderReader();
  writeFileSync(join(dir.path, "file"), "12345");
  expect((await readFolder(dir.path)).map((e) => [e.name, e.stat?.size])).toEqual([["file", 5n]]);
});
