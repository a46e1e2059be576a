// A disk that takes fewer bytes than it is given (full disk, quota, file-size
// limit) without an error: the restore writes the rest from where it stopped,
// fails the file when the disk takes nothing more, and never renames a
// truncated file into place (the on-disk size is checked before the rename).

import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import type * as FsPromises from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { writevFully, ShortWriteError } from "../../agent/full-write.ts";
import { writeVolume } from "../../agent/restore-volume.ts";
import { writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import type * as TempFile from "../../agent/temp-file.ts";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { tempDir } from "../support/tree.ts";

type Disk = "short-once" | "full" | "lying";
/** Restore folders whose new files are written to a misbehaving disk, and how. */
const disks = new Map<string, Disk>();
/** Temp files of volume restores whose writes the disk refuses. */
const fullVolumes = new Set<string>();
const dirs: ReturnType<typeof tempDir>[] = [];

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  const open = async (...args: Parameters<typeof actual.open>) => {
    const handle = await actual.open(...args);
    const [file, flags] = args;
    if (typeof file === "string" && flags === "w" && fullVolumes.has(file)) {
      // A volume's temp file on a full disk: every write takes nothing.
      Object.defineProperty(handle, "write", { value: async (buffer: NodeJS.ArrayBufferView) => ({ bytesWritten: 0, buffer }) });
    }
    return handle;
  };
  return { ...actual, open };
});

// A restore's files are made by openNewFile.
vi.mock("../../agent/temp-file.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof TempFile>();
  const openNewFile = async (...args: Parameters<typeof actual.openNewFile>) => {
    const [file] = args;
    const handle = await actual.openNewFile(...args);
    const disk = [...disks].find(([dir]) => file.startsWith(dir))?.[1];
    if (!disk) return handle;
    let calls = 0;
    const writev = handle.writev.bind(handle);
    // Takes half of the first buffer; "short-once" then behaves, "full" takes nothing more, "lying" claims it took all.
    const shortWritev = async (buffers: Uint8Array[], position: number) => {
      calls += 1;
      const first = buffers[0];
      if (disk === "short-once" && calls > 1) return writev(buffers, position);
      if (disk === "full" && calls > 1) return { bytesWritten: 0 };
      if (!first) throw new Error("test disk: a buffer expected");
      const half = first.subarray(0, Math.floor(first.length / 2));
      const { bytesWritten } = await handle.write(half, 0, half.length, position);
      const claimed = disk === "lying" ? buffers.reduce((sum, b) => sum + b.byteLength, 0) : bytesWritten;
      return { bytesWritten: claimed };
    };
    return Object.assign(handle, { writev: shortWritev });
  };
  return { ...actual, openNewFile };
});

const body = randomBytes(300 * 1024);
const entry: RecoveryEntry = { path: "d/f.bin", kind: "file", size: body.length, mode: 0o644, mtimeNs: "1000000000000", sha256: createHash("sha256").update(body).digest("hex") };
const other = Buffer.from("fine\n");
const otherEntry: RecoveryEntry = { path: "ok.txt", kind: "file", size: other.length, mode: 0o644, mtimeNs: "1000000000000", sha256: createHash("sha256").update(other).digest("hex") };
const dirEntry: RecoveryEntry = { path: "d", kind: "dir", size: 0, mode: 0o755, mtimeNs: "1000000000000" };

async function* chunks(): AsyncIterable<Uint8Array> {
  for (let at = 0; at < body.length; at += 64 * 1024) yield body.subarray(at, at + 64 * 1024);
}

async function restoreOn(disk: Disk) {
  const dir = tempDir("tidemark-short-");
  dirs.push(dir);
  const to = join(dir.path, "out");
  disks.set(join(to, "d"), disk);
  const report = await writeRecoveryPoint({ entries: [dirEntry, entry, otherEntry], content: async (e) => (e === entry ? chunks() : other) }, to);
  return { to, report };
}

afterEach(() => {
  disks.clear();
  fullVolumes.clear();
  for (const dir of dirs.splice(0)) dir.remove();
});

describe("restore onto a disk that takes fewer bytes than it is given", () => {
  it("writes the rest from where a short write stopped", async () => {
    const { to, report } = await restoreOn("short-once");
    expect(report.failures).toEqual([]);
    expect(readFileSync(join(to, "d/f.bin")).equals(body)).toBe(true);
  });

  it("fails the file, naming it and why, when the disk takes nothing more; nothing at its name, no temp file", async () => {
    const { to, report } = await restoreOn("full");
    expect(report.failures).toHaveLength(1);
    expect(report.failures[0]?.path).toBe("d/f.bin");
    expect(report.failures[0]?.reason).toMatch(/d\/f\.bin: the disk took none of the last \d+ bytes .*full disk/);
    expect(readdirSync(join(to, "d"))).toEqual([]);
    expect(readFileSync(join(to, "ok.txt")).equals(other)).toBe(true);
  });

  it("checks the size on disk before the rename, whatever the writes claimed", async () => {
    const { to, report } = await restoreOn("lying");
    expect(report.failures).toEqual([{ path: "d/f.bin", reason: expect.stringMatching(/the disk holds \d+ of its 307200 bytes/) as string }]);
    expect(existsSync(join(to, "d/f.bin"))).toBe(false);
    expect(readdirSync(join(to, "d"))).toEqual([]);
  });
});

describe("volume restore onto a full disk", () => {
  it("fails naming the file, and leaves neither the image nor its temp file", async () => {
    const dir = tempDir("tidemark-short-");
    dirs.push(dir);
    const to = join(dir.path, "vol.img");
    fullVolumes.add(`${to}.tidemark-restore`);
    const block = Buffer.alloc(BLOCK_SIZE, 7);
    await expect(writeVolume(to, BLOCK_SIZE * 2, [1], async () => block, {})).rejects.toThrow(/vol\.img: the disk took none of the last \d+ bytes/);
    expect(readdirSync(dir.path)).toEqual([]);
  });
});

describe("writevFully", () => {
  it("skips exactly the bytes taken across buffers, and fails with no progress", async () => {
    const written: number[] = [];
    const takes = [3, 0];
    const writer = {
      write: () => Promise.reject(new Error("unused")),
      writev: async (buffers: Uint8Array[], position: number) => {
        const take = Math.min(takes.shift() ?? Infinity, buffers.reduce((s, b) => s + b.length, 0));
        let at = position;
        for (const b of buffers) for (const byte of b) if (at - position < take) written[at++] = byte;
        return { bytesWritten: take };
      },
    };
    await expect(writevFully(writer, [Uint8Array.of(1, 2), Uint8Array.of(3, 4), Uint8Array.of(5)], 10, "x")).rejects.toThrow(ShortWriteError);
    expect(written.slice(10)).toEqual([1, 2, 3]);
    takes.push(2);
    expect(await writevFully(writer, [Uint8Array.of(1, 2), Uint8Array.of(3, 4), Uint8Array.of(5)], 0, "y")).toBe(5);
    expect(written.slice(0, 5)).toEqual([1, 2, 3, 4, 5]);
  });
});
