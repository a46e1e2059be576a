// After a restore renames its files and links into place, every folder that
// got new names is fsynced, once each (not once a file): a crash after the
// restore reported success does not lose the names.

import { createHash } from "node:crypto";
import type * as FsPromises from "node:fs/promises";
import { chmod } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FOLDER_SYNC_CONCURRENCY, writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import { tempDir } from "../support/tree.ts";

/** Paths synced through a handle opened read-only (folders; files are opened to be written). */
const synced: string[] = [];
/** Folder syncs and chmods, in the order they happened. */
const events: { op: "sync" | "chmod"; path: string; mode?: number }[] = [];
/** Folder syncs under way at once, now and at most. */
const inFlight = { now: 0, most: 0 };

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  const open = async (...args: Parameters<typeof actual.open>) => {
    const handle = await actual.open(...args);
    const [file, flags] = args;
    if (typeof file !== "string" || flags !== "r") return handle;
    const sync = handle.sync.bind(handle);
    Object.defineProperty(handle, "sync", {
      value: async () => {
        synced.push(file);
        events.push({ op: "sync", path: file });
        inFlight.now += 1;
        inFlight.most = Math.max(inFlight.most, inFlight.now);
        try {
          // Held a moment, as a disk's flush would: syncs started together overlap.
          await new Promise((resolve) => setTimeout(resolve, 5));
          return await sync();
        } finally {
          inFlight.now -= 1;
        }
      },
    });
    return handle;
  };
  const chmod = async (...args: Parameters<typeof actual.chmod>) => {
    const [path, mode] = args;
    if (typeof path === "string" && typeof mode === "number") events.push({ op: "chmod", path, mode });
    return actual.chmod(...args);
  };
  return { ...actual, open, chmod };
});

const dirs: ReturnType<typeof tempDir>[] = [];
afterEach(() => {
  synced.length = 0;
  events.length = 0;
  inFlight.most = 0;
  for (const dir of dirs.splice(0)) dir.remove();
});

const T = "1000000000000";
function file(path: string, text: string): [RecoveryEntry, Buffer] {
  const body = Buffer.from(text);
  return [{ path, kind: "file", size: body.length, mode: 0o644, mtimeNs: T, sha256: createHash("sha256").update(body).digest("hex") }, body];
}

describe("restore durability", () => {
  it("fsyncs each folder that got new names once, after the renames", async () => {
    const dir = tempDir("tidemark-sync-");
    dirs.push(dir);
    const to = join(dir.path, "out");
    const files = [file("a.txt", "a"), file("d/b.txt", "b"), file("d/c.txt", "c"), file("d/e/f.txt", "f")];
    const bodies = new Map(files.map(([entry, body]) => [entry.path, body]));
    const entries: RecoveryEntry[] = [
      { path: "d", kind: "dir", size: 0, mode: 0o755, mtimeNs: T },
      { path: "d/e", kind: "dir", size: 0, mode: 0o755, mtimeNs: T },
      { path: "quiet", kind: "dir", size: 0, mode: 0o755, mtimeNs: T },
      ...files.map(([entry]) => entry),
      { path: "d/link", kind: "symlink", size: 0, mode: 0o777, mtimeNs: T, link: "b.txt" },
    ];
    const report = await writeRecoveryPoint({ entries, content: async (e) => bodies.get(e.path) ?? Buffer.alloc(0) }, to);
    expect(report.failures).toEqual([]);
    // "quiet" got no names; root got a.txt and the folders d and quiet, d its files, link and folder e, e its file.
    expect(synced.sort()).toEqual([to, join(to, "d"), join(to, "d/e")].sort());
  });

  it("syncs the folders several at once (at most FOLDER_SYNC_CONCURRENCY), each once, all before the restore returns", async () => {
    const dir = tempDir("tidemark-sync-");
    dirs.push(dir);
    const to = join(dir.path, "out");
    const files = Array.from({ length: 20 }, (_, i) => file(`f${i}/x.txt`, `x${i}`));
    const bodies = new Map(files.map(([entry, body]) => [entry.path, body]));
    const entries: RecoveryEntry[] = [...files.map(([entry]) => ({ path: entry.path.split("/")[0] ?? "", kind: "dir" as const, size: 0, mode: 0o755, mtimeNs: T })), ...files.map(([entry]) => entry)];
    const report = await writeRecoveryPoint({ entries, content: async (e) => bodies.get(e.path) ?? Buffer.alloc(0) }, to);
    expect(report.failures).toEqual([]);
    expect(synced.sort()).toEqual([to, ...files.map(([entry]) => join(to, entry.path.split("/")[0] ?? ""))].sort());
    expect(inFlight.now).toBe(0);
    expect(inFlight.most).toBe(FOLDER_SYNC_CONCURRENCY);
  });

  it("syncs every folder before any folder gets a mode its owner cannot read or enter", async () => {
    const dir = tempDir("tidemark-sync-");
    dirs.push(dir);
    const to = join(dir.path, "out");
    const [inner, body] = file("shut/open/f.txt", "f");
    const entries: RecoveryEntry[] = [
      // Not enterable by its owner (0o600), holding a folder its owner cannot read (0o300).
      { path: "shut", kind: "dir", size: 0, mode: 0o600, mtimeNs: T },
      { path: "shut/open", kind: "dir", size: 0, mode: 0o300, mtimeNs: T },
      { path: "none", kind: "dir", size: 0, mode: 0o000, mtimeNs: T },
      inner,
    ];
    const report = await writeRecoveryPoint({ entries, content: async () => body }, to);
    try {
      expect(report.failures).toEqual([]);
      const syncs = events.flatMap((event, index) => (event.op === "sync" ? [{ path: event.path, index }] : []));
      expect(syncs.map((s) => s.path).sort()).toEqual([to, join(to, "shut"), join(to, "shut/open")].sort());
      const closing = events.flatMap((event, index) => (event.op === "chmod" && ((event.mode ?? 0) & 0o700) !== 0o700 ? [{ path: event.path, index }] : []));
      expect(closing.map((c) => c.path).sort()).toEqual([join(to, "none"), join(to, "shut"), join(to, "shut/open")].sort());
      // A folder is synced before it or a folder above it is closed to its owner.
      for (const sync of syncs) {
        for (const close of closing) {
          if (sync.path === close.path || sync.path.startsWith(`${close.path}/`)) expect(sync.index).toBeLessThan(close.index);
        }
      }
    } finally {
      for (const path of ["shut", "shut/open", "none"]) await chmod(join(to, path), 0o700);
    }
  });
});
