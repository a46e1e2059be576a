// After a restore renames its files and links into place, every folder that
// got new names is fsynced, once each (not once a file): a crash after the
// restore reported success does not lose the names.

import { createHash } from "node:crypto";
import type * as FsPromises from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import { tempDir } from "../support/tree.ts";

/** Paths synced through a handle opened read-only (folders; files are opened to be written). */
const synced: string[] = [];

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
        return sync();
      },
    });
    return handle;
  };
  return { ...actual, open };
});

const dirs: ReturnType<typeof tempDir>[] = [];
afterEach(() => {
  synced.length = 0;
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
});
