// Restore that reports instead of aborting: a snapshot taken through the
// whole pipeline (agent -> applier -> in-memory bucket) restored with a
// 255-byte name, symlinks (a loop, one pointing outside), hard links, and an
// object altered behind the applier's back; and the writer fed hostile
// recovery points directly (a symlink then a file below it, bad names).

import { createHash } from "node:crypto";
import { linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { restoreSnapshot } from "../../agent/restore.ts";
import { writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import { dataKey } from "../../contract/layout.ts";
import { DEFAULT_TASK_TIMEOUT_SECONDS } from "../../contract/tasks.ts";
import { listSnapshots, readManifest } from "../../lambdas/tasks/snapshots.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

const SET = "app";
const LONG = "n".repeat(251) + ".txt";

/** Every name under root (recursively, symlinks not followed). */
function allNames(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const dirent of readdirSync(dir, { withFileTypes: true })) {
      out.push(dirent.name);
      if (dirent.isDirectory()) walk(join(dir, dirent.name));
    }
  };
  walk(root);
  return out;
}

async function snapshotOf(h: Harness) {
  await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS } });
  await h.agent.drain(SET);
  const summary = (await listSnapshots(h.store, SET)).at(-1);
  if (!summary) throw new Error("no snapshot was taken");
  return summary;
}

describe("restore of a snapshot", () => {
  let h: Harness;
  let out: ReturnType<typeof tempDir>;
  beforeEach(() => {
    h = agentHarness(SET);
    out = tempDir("tidemark-restore-");
  });
  afterEach(async () => {
    await h.close();
    out.remove();
  });

  it("writes a 255-byte name, symlinks (a loop, one outside the tree) and hard links, and reports an altered object while writing the rest", async () => {
    const src = h.src.path;
    mkdirSync(join(src, "sub"));
    writeFileSync(join(src, LONG), "long name");
    writeFileSync(join(src, "one.txt"), "shared bytes");
    linkSync(join(src, "one.txt"), join(src, "sub/two.txt"));
    writeFileSync(join(src, "broken.txt"), "will be altered in the bucket");
    symlinkSync("loop", join(src, "loop"));
    symlinkSync("/etc", join(src, "outside"));
    const summary = await snapshotOf(h);
    const entries = await readManifest(h.store, summary);
    const groups = entries.filter((e) => e.linkGroup !== undefined);
    expect(groups.map((e) => e.path).sort()).toEqual(["one.txt", "sub/two.txt"]);
    expect(groups[0]?.linkGroup).toBe(groups[1]?.linkGroup);

    // Behind the applier's back: same metadata, other bytes.
    const live = await h.store.get(dataKey(SET, "broken.txt"));
    await h.store.put(dataKey(SET, "broken.txt"), Buffer.from("tampered"), live?.meta ?? {});

    const to = join(out.path, "r");
    const result = await restoreSnapshot(h.store, summary, to);
    expect(result.failures).toEqual([{ path: "broken.txt", reason: expect.stringContaining("holds 8 bytes, the recovery point's file 29") }]);
    expect(readFileSync(join(to, LONG), "utf8")).toBe("long name");
    expect(readlinkSync(join(to, "loop"))).toBe("loop");
    expect(readlinkSync(join(to, "outside"))).toBe("/etc");
    expect(statSync(join(to, "one.txt")).ino).toBe(statSync(join(to, "sub/two.txt")).ino);
    expect(readFileSync(join(to, "sub/two.txt"), "utf8")).toBe("shared bytes");
    expect(result.hardLinks).toBe(1);
    expect(() => lstatSync(join(to, "broken.txt"))).toThrow(/ENOENT/);
    expect(allNames(to).filter((n) => n.startsWith(".tm-"))).toEqual([]);
  });

  it("--force leaves what the snapshot does not hold and says so; --delete removes it", async () => {
    writeFileSync(join(h.src.path, "kept.txt"), "kept");
    const summary = await snapshotOf(h);
    const to = join(out.path, "r");
    mkdirSync(join(to, "old/deep"), { recursive: true });
    writeFileSync(join(to, "old/deep/x"), "x");
    writeFileSync(join(to, "stray.txt"), "stray");

    await expect(restoreSnapshot(h.store, summary, to)).rejects.toThrow(/not empty/);
    const kept = await restoreSnapshot(h.store, summary, to, { force: true });
    expect(kept.extra).toEqual(["old", "stray.txt"]);
    expect(kept.deleted).toEqual([]);
    expect(readFileSync(join(to, "stray.txt"), "utf8")).toBe("stray");

    const deleted = await restoreSnapshot(h.store, summary, to, { force: true, delete: true });
    expect(deleted.deleted).toEqual(["old", "stray.txt"]);
    expect(readdirSync(to).sort()).toEqual(["kept.txt"]);
  });
});

describe("the recovery point writer", () => {
  let out: ReturnType<typeof tempDir>;
  let outside: ReturnType<typeof tempDir>;
  beforeEach(() => {
    out = tempDir("tidemark-writer-");
    outside = tempDir("tidemark-outside-");
  });
  afterEach(() => {
    out.remove();
    outside.remove();
  });

  const file = (path: string, body: string): RecoveryEntry & { body: string } => ({
    path,
    kind: "file",
    size: Buffer.byteLength(body),
    mode: 0o644,
    mtimeNs: "1700000000000000000",
    sha256: createHashHex(body),
    body,
  });
  const point = (entries: (RecoveryEntry & { body?: string })[]) => ({
    entries,
    content: async (entry: RecoveryEntry & { body?: string }) => Buffer.from(entry.body ?? ""),
  });

  it("counts every file's bytes when files are written at once", async () => {
    const entries = Array.from({ length: 20 }, (_, i) => file(`f${i}.txt`, "x".repeat(i + 1)));
    const report = await writeRecoveryPoint(point(entries), join(out.path, "t"));
    expect(report.files).toBe(20);
    expect(report.bytes).toBe(entries.reduce((sum, e) => sum + e.size, 0));
  });

  it("writes every file of folders the recovery point lists no entry for, though files are written at once", async () => {
    // Eight writes at a time each find the folders missing and make them: one that made a folder first is no failure.
    const entries = Array.from({ length: 40 }, (_, i) => file(`deep/er/f${i}.txt`, `file ${i}`));
    const report = await writeRecoveryPoint(point(entries), join(out.path, "t"));
    expect(report.failures).toEqual([]);
    expect(report.files).toBe(40);
    for (let i = 0; i < 40; i++) expect(readFileSync(join(out.path, "t", "deep", "er", `f${i}.txt`), "utf8")).toBe(`file ${i}`);
  });

  it("never writes through a symlink of the recovery point: a file below it is reported, nothing lands outside", async () => {
    const link: RecoveryEntry = { path: "a", kind: "symlink", size: 0, mode: 0o777, mtimeNs: "1700000000000000000", link: outside.path };
    const result = await writeRecoveryPoint(point([link, file("a/passwd", "root::0:0")]), out.path);
    expect(readdirSync(outside.path)).toEqual([]);
    expect(readlinkSync(join(out.path, "a"))).toBe(outside.path);
    expect(result.failures).toEqual([{ path: "a/passwd", reason: expect.stringContaining("below a (a symlink)") }]);
  });

  it("never writes through a symlink already in the folder", async () => {
    symlinkSync(outside.path, join(out.path, "b"));
    const result = await writeRecoveryPoint(point([file("b/x", "x"), file("ok", "ok")]), out.path, { force: true });
    expect(readdirSync(outside.path)).toEqual([]);
    expect(result.failures).toEqual([{ path: "b/x", reason: "b is a symlink; nothing is written through it" }]);
    expect(readFileSync(join(out.path, "ok"), "utf8")).toBe("ok");
    expect(result.extra).toEqual(["b"]);
  });

  it("reports a newline name, a name the filesystem refuses, a path listed twice and content that cannot be read, and writes the rest", async () => {
    const tooLong = "x".repeat(256);
    const unreadable = file("gone.txt", "?");
    const result = await writeRecoveryPoint(
      {
        entries: [file("new\nline", "n"), file(tooLong, "t"), file("twice", "1"), file("twice", "2"), unreadable, file("fine.txt", "fine")],
        content: async (entry) => {
          if (entry === unreadable) throw new Error("the content of gone.txt is neither live nor preserved");
          return Buffer.from("body" in entry ? String(entry.body) : "");
        },
      },
      out.path,
    );
    expect(result.failures.map((f) => f.path).sort()).toEqual(["gone.txt", "new\nline", "twice", tooLong].sort());
    expect(result.failures.find((f) => f.path === tooLong)?.reason).toMatch(/ENAMETOOLONG/);
    expect(readFileSync(join(out.path, "fine.txt"), "utf8")).toBe("fine");
    expect(readFileSync(join(out.path, "twice"), "utf8")).toBe("1");
    expect(readdirSync(out.path).sort()).toEqual(["fine.txt", "twice"]);
  });

  it("removes its temp files when interrupted", async () => {
    const controller = new AbortController();
    const entries = Array.from({ length: 40 }, (_, i) => file(`f${i}`, `body ${i}`));
    let reads = 0;
    const restore = writeRecoveryPoint(
      {
        entries,
        content: async (entry) => {
          reads += 1;
          if (reads === 10) controller.abort(new Error("interrupted"));
          // A stream: the abort lands between its chunks, with the temp file open.
          return (async function* () {
            yield Buffer.from(entry.body.slice(0, 2));
            await new Promise((resolve) => setTimeout(resolve, 5));
            yield Buffer.from(entry.body.slice(2));
          })();
        },
      },
      out.path,
      { signal: controller.signal },
    );
    await expect(restore).rejects.toThrow("interrupted");
    expect(allNames(out.path).filter((n) => n.startsWith(".tm-"))).toEqual([]);
  });
});

function createHashHex(body: string): string {
  return createHash("sha256").update(body).digest("hex");
}
