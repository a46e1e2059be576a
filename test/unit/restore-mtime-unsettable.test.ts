// A time the recovery point holds that the file system refuses (utimes fails EINVAL: ext4 keeps 1901 to 2446) loses
// the entry its mtime only: the file, link or folder is kept (its content is proven) and named among the restore's
// failures as "mtime not settable", not discarded.

import { createHash } from "node:crypto";
import type * as Fs from "node:fs";
import type * as FsPromises from "node:fs/promises";
import { lstatSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import { tempDir } from "../support/tree.ts";

/** Every utimes refuses a time before 1930 in this test (restore passes seconds as a numeric string). */
const refused = (mtime: unknown) => Number(mtime) < -1_300_000_000;

const einval = () => Object.assign(new Error("EINVAL: invalid argument, utime"), { code: "EINVAL", syscall: "utime" });

vi.mock("node:fs/promises", async (importOriginal) => {
  const fs = await importOriginal<typeof FsPromises>();
  const refuse =
    <A extends unknown[]>(set: (path: string, atime: string, mtime: string, ...rest: A) => Promise<void>) =>
    (path: string, atime: string, mtime: string, ...rest: A) =>
      refused(mtime) ? Promise.reject(einval()) : set(path, atime, mtime, ...rest);
  return { ...fs, default: fs, utimes: refuse(fs.utimes as never), lutimes: refuse(fs.lutimes as never) };
});
// A file's time is set through its descriptor (agent/temp-file.ts).
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof Fs>();
  const futimes = (fd: number, atime: string, mtime: string, done: (error: Error | null) => void) =>
    refused(mtime) ? process.nextTick(done, einval()) : fs.futimes(fd, atime, mtime, done);
  return { ...fs, default: { ...fs, futimes }, futimes };
});

let cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.reverse()) cleanup();
  cleanups = [];
});

describe("a restore whose mtime the file system refuses", () => {
  it("keeps the file, link and folder and names each as mtime not settable", async () => {
    const dir = tempDir();
    cleanups.push(() => dir.remove());
    const body = Buffer.from("proven");
    // -2000000000 s: 1906.
    const mtimeNs = "-2000000000000000000";
    const entries: RecoveryEntry[] = [
      { path: "old", kind: "dir", size: 0, mode: 0o755, mtimeNs },
      { path: "old/file", kind: "file", size: body.length, mode: 0o644, mtimeNs, sha256: createHash("sha256").update(body).digest("hex") },
      { path: "old/link", kind: "symlink", size: 0, mode: 0o777, mtimeNs, link: "file" },
      { path: "fine", kind: "file", size: body.length, mode: 0o644, mtimeNs: "1700000000000000000", sha256: createHash("sha256").update(body).digest("hex") },
    ];
    const report = await writeRecoveryPoint({ entries, content: async () => body }, join(dir.path, "to"));
    expect(readFileSync(join(dir.path, "to/old/file"), "utf8")).toBe("proven");
    expect(readlinkSync(join(dir.path, "to/old/link"))).toBe("file");
    expect(Math.floor(lstatSync(join(dir.path, "to/fine")).mtimeMs)).toBe(1700000000000);
    expect(report).toMatchObject({ files: 2, symlinks: 1, dirs: 1 });
    expect(report.failures.map((f) => f.path).sort()).toEqual(["old", "old/file", "old/link"]);
    for (const failure of report.failures) expect(failure.reason).toMatch(/^mtime not settable: EINVAL: invalid argument \(mtimeNs -2000000000000000000\); its content is restored$/);
  });
});
