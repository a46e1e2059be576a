// A restore makes its files durable before it names them: every file is
// written under a temp name, then the file system is synced once (syncfs)
// and only then are the files renamed into place; no small file is fsynced
// one by one (a large one is, as soon as it is written). Where the file system cannot be synced, each file is fsynced before
// it is named, and a file whose bytes cannot be synced is not restored.

import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import type * as FsPromises from "node:fs/promises";
import { basename, join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import type * as Durable from "../../agent/restore-durable.ts";
import { writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import { tempDir } from "../support/tree.ts";

/** What happened to the restore's files, in order: file systems synced, temp files fsynced, renames into place. */
const events: { op: "syncfs" | "fsync" | "rename"; path: string; size?: number }[] = [];
const control = { syncfs: true, failFsync: "" };

vi.mock("../../agent/restore-durable.ts", () => ({
  syncFileSystems: async (dirs: Iterable<string>) => {
    for (const dir of dirs) events.push({ op: "syncfs", path: dir });
    return control.syncfs;
  },
}));

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  const open = async (...args: Parameters<typeof actual.open>) => {
    const handle = await actual.open(...args);
    const [file] = args;
    // Files only: a folder's sync at the end is restore-folder-sync.test.ts's.
    if (typeof file !== "string" || !basename(file).startsWith(".tm-")) return handle;
    const sync = handle.sync.bind(handle);
    Object.defineProperty(handle, "sync", {
      value: async () => {
        events.push({ op: "fsync", path: file, size: statSync(file).size });
        if (control.failFsync !== "" && readFileSync(file, "utf8") === control.failFsync) throw Object.assign(new Error("EIO: i/o error, fsync"), { code: "EIO", syscall: "fsync" });
        return sync();
      },
    });
    return handle;
  };
  const rename = async (...args: Parameters<typeof actual.rename>) => {
    const [from] = args;
    if (typeof from === "string") events.push({ op: "rename", path: from });
    return actual.rename(...args);
  };
  return { ...actual, open, rename };
});

const dirs: ReturnType<typeof tempDir>[] = [];
afterEach(() => {
  events.length = 0;
  control.syncfs = true;
  control.failFsync = "";
  for (const dir of dirs.splice(0)) dir.remove();
});

const T = "1000000000000";
function file(path: string, text: string, linkGroup?: string): [RecoveryEntry, Buffer] {
  const body = Buffer.from(text);
  return [{ path, kind: "file", size: body.length, mode: 0o640, mtimeNs: T, sha256: createHash("sha256").update(body).digest("hex"), ...(linkGroup ? { linkGroup } : {}) }, body];
}

async function restore() {
  const dir = tempDir("tidemark-durable-");
  dirs.push(dir);
  const to = join(dir.path, "out");
  // Two hard links of one file, a file in a folder, and a large one (streamed in parts, not read whole).
  const large = "x".repeat(3 * 1024 * 1024);
  const files = [file("a.txt", "a", "g"), file("b.txt", "a", "g"), file("d/c.txt", "c"), file("big.bin", large)];
  const bodies = new Map(files.map(([entry, body]) => [entry.path, body]));
  const entries: RecoveryEntry[] = [{ path: "d", kind: "dir", size: 0, mode: 0o755, mtimeNs: T }, ...files.map(([entry]) => entry)];
  const report = await writeRecoveryPoint({ entries, content: async (e) => bodies.get(e.path) ?? Buffer.alloc(0) }, to);
  return { to, report, bodies };
}

describe("restore durability of files", () => {
  it("syncs the file system once, before any file is named, and fsyncs only the large file one by one", async () => {
    const { to, report, bodies } = await restore();
    expect(report.failures).toEqual([]);
    expect(report).toMatchObject({ files: 4, hardLinks: 1 });
    expect(events.filter((e) => e.op === "syncfs")).toHaveLength(1);
    expect(events.filter((e) => e.op === "fsync").map((e) => e.size)).toEqual([3 * 1024 * 1024]);
    expect(events.findIndex((e) => e.op === "rename")).toBeGreaterThan(events.findIndex((e) => e.op === "syncfs"));
    for (const [path, body] of bodies) expect(readFileSync(join(to, path)).equals(body)).toBe(true);
    // Mode and mtime set before the rename are the entry's; the links are one file.
    expect(statSync(join(to, "d/c.txt")).mode & 0o7777).toBe(0o640);
    // utimes takes microseconds.
    expect(statSync(join(to, "d/c.txt"), { bigint: true }).mtimeNs / 1000n).toBe(BigInt(T) / 1000n);
    expect(statSync(join(to, "a.txt")).ino).toBe(statSync(join(to, "b.txt")).ino);
  });

  it("fsyncs each file before it is named where the file system cannot be synced (a link's bytes are its file's)", async () => {
    control.syncfs = false;
    const { to, report } = await restore();
    expect(report.failures).toEqual([]);
    const fsynced = events.filter((e) => e.op === "fsync").map((e) => e.path);
    // a.txt, d/c.txt and big.bin: b.txt is a link of a.txt.
    expect(fsynced).toHaveLength(3);
    const renames = events.filter((e) => e.op === "rename").map((e) => e.path);
    expect(renames).toHaveLength(4);
    for (const temp of fsynced) expect(events.findIndex((e) => e.op === "rename" && e.path === temp)).toBeGreaterThan(events.findIndex((e) => e.op === "fsync" && e.path === temp));
    expect(events.findIndex((e) => e.op === "rename")).toBeGreaterThan(events.findLastIndex((e) => e.op === "fsync"));
    expect(readFileSync(join(to, "b.txt"), "utf8")).toBe("a");
  });

  it("does not restore a file whose bytes cannot be synced, nor its hard links; nothing at their names, no temp left", async () => {
    control.syncfs = false;
    control.failFsync = "a";
    const { to, report } = await restore();
    expect(report.failures.map((f) => f.path)).toEqual(["a.txt", "b.txt"]);
    expect(report.failures[0]?.reason).toMatch(/could not be synced to disk: EIO/);
    expect(report).toMatchObject({ files: 2, hardLinks: 0 });
    expect(existsSync(join(to, "a.txt")) || existsSync(join(to, "b.txt"))).toBe(false);
    expect(readdirSync(to).sort()).toEqual(["big.bin", "d"]);
    expect(readFileSync(join(to, "d/c.txt"), "utf8")).toBe("c");
  });
});

describe("syncFileSystems", () => {
  const actual = () => vi.importActual<typeof Durable>("../../agent/restore-durable.ts");

  it.runIf(process.platform === "linux")("syncs the file system of a folder with `sync -f`", async () => {
    const dir = tempDir("tidemark-durable-");
    dirs.push(dir);
    expect(await (await actual()).syncFileSystems([dir.path])).toBe(true);
  });

  it("says so when it cannot: no such tool, or no such folder", async () => {
    const dir = tempDir("tidemark-durable-");
    dirs.push(dir);
    const { syncFileSystems } = await actual();
    expect(await syncFileSystems([dir.path], join(dir.path, "no-such-sync"))).toBe(false);
    expect(await syncFileSystems([join(dir.path, "missing")])).toBe(false);
  });
});
