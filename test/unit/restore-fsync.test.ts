// A restore proves each file durable before it names it, through the handle
// that wrote it, before its mode is set (a mode such as 000 could not stop a
// sync) and before the rename into place: a file written in one write is
// opened O_DSYNC (the write returns once its bytes are on disk), any other is
// fsynced. A file whose bytes cannot be made durable is not restored and
// leaves nothing at its name; no more temp files exist at once than files are
// written at once.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import type * as FsPromises from "node:fs/promises";
import { basename, join, resolve } from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { DURABLE_WRITE_BYTES, WRITE_CONCURRENCY, writeRecoveryPoint, type RecoveryEntry } from "../../agent/restore-writer.ts";
import type * as TempFile from "../../agent/temp-file.ts";
import { tempDir } from "../support/tree.ts";

/** What happened to the restore's temp files, in order. */
const events: { op: "open" | "write" | "fsync" | "truncate" | "chmod" | "rename"; path: string; flags?: string; mode?: number | undefined; durable?: boolean }[] = [];
/** A file whose content is this fails its fsync, or its write (EIO). */
const control = { failFsync: "", failWrite: "" };

const eio = (syscall: string) => Object.assign(new Error(`EIO: i/o error, ${syscall}`), { code: "EIO", syscall });

// The restore's files are made by openNewFile (created "wx"); any other open of a temp file would be a reopen.
vi.mock("../../agent/temp-file.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof TempFile>();
  const openNewFile = async (...args: Parameters<typeof actual.openNewFile>) => {
    const [file, mode] = args;
    const handle = await actual.openNewFile(...args);
    events.push({ op: "open", path: file, flags: "wx", mode, durable: handle.durableWrites });
    const sync = handle.sync.bind(handle);
    const chmod = handle.chmod.bind(handle);
    const writev = handle.writev.bind(handle);
    const truncate = handle.truncate.bind(handle);
    return Object.assign(handle, {
      writev: async (buffers: Uint8Array[], position: number) => {
        events.push({ op: "write", path: file });
        if (control.failWrite !== "" && Buffer.concat(buffers).toString() === control.failWrite) throw eio("write");
        return writev(buffers, position);
      },
      truncate: async (length: number) => {
        events.push({ op: "truncate", path: file });
        return truncate(length);
      },
      sync: async () => {
        events.push({ op: "fsync", path: file, flags: "wx" });
        if (control.failFsync !== "" && readFileSync(file, "utf8") === control.failFsync) throw eio("fsync");
        return sync();
      },
      chmod: async (mode: number) => {
        events.push({ op: "chmod", path: file });
        return chmod(mode);
      },
    });
  };
  return { ...actual, openNewFile };
});

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  const open = async (...args: Parameters<typeof actual.open>) => {
    const [file, flags] = args;
    // Files only: a folder's sync at the end is restore-folder-sync.test.ts's.
    if (typeof file === "string" && basename(file).startsWith(".tm-")) events.push({ op: "open", path: file, flags: String(flags) });
    return actual.open(...args);
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
  control.failFsync = "";
  control.failWrite = "";
  for (const dir of dirs.splice(0)) dir.remove();
});

const T = "1000000000000";
function file(path: string, text: string, mode = 0o640, linkGroup?: string): [RecoveryEntry, Buffer] {
  const body = Buffer.from(text);
  return [{ path, kind: "file", size: body.length, mode, mtimeNs: T, sha256: createHash("sha256").update(body).digest("hex"), ...(linkGroup ? { linkGroup } : {}) }, body];
}

async function restore(files: [RecoveryEntry, Buffer][], onContent?: (to: string) => void) {
  const dir = tempDir("tidemark-fsync-");
  dirs.push(dir);
  const to = join(dir.path, "out");
  const bodies = new Map(files.map(([entry, body]) => [entry.path, body]));
  const entries: RecoveryEntry[] = [{ path: "d", kind: "dir", size: 0, mode: 0o755, mtimeNs: T }, ...files.map(([entry]) => entry)];
  const report = await writeRecoveryPoint(
    {
      entries,
      content: async (e) => {
        onContent?.(to);
        return bodies.get(e.path) ?? Buffer.alloc(0);
      },
    },
    to,
  );
  return { to, report, bodies };
}

const at = (op: string, path: string) => events.findIndex((e) => e.op === op && e.path === path);

describe("restore durability of files", () => {
  it("makes every file durable through its write handle before its mode is set and before it is named", async () => {
    const files = [file("a.txt", "a", 0o640, "g"), file("b.txt", "a", 0o640, "g"), file("d/c.txt", "c"), file("big.bin", "x".repeat(3 * 1024 * 1024))];
    const { to, report, bodies } = await restore(files);
    expect(report.failures).toEqual([]);
    expect(report).toMatchObject({ files: 4, hardLinks: 1 });
    const written = events.filter((e) => e.op === "open");
    // a.txt, d/c.txt and big.bin: b.txt is a link of the named a.txt.
    expect(written).toHaveLength(3);
    const small = written.filter((e) => e.durable).map((e) => e.path);
    const large = written.filter((e) => !e.durable).map((e) => e.path);
    // The small files are opened O_DSYNC and written in one write, which is their sync: no fsync of their own.
    expect(small).toHaveLength(2);
    for (const path of small) {
      expect(events.filter((e) => e.path === path && e.op !== "open" && e.op !== "rename").map((e) => e.op)).toEqual(["write"]);
      expect(at("write", path)).toBeLessThan(at("rename", path));
    }
    // big.bin (3 MiB, above DURABLE_WRITE_BYTES: not opened O_DSYNC): its one fsync, on the handle that wrote it (no reopen), after its last write and before its rename.
    expect(large).toHaveLength(1);
    for (const path of large) {
      expect(events.filter((e) => e.op === "fsync" && e.path === path)).toEqual([{ op: "fsync", path, flags: "wx" }]);
      expect(events.findLastIndex((e) => e.op === "write" && e.path === path)).toBeLessThan(at("fsync", path));
      expect(at("fsync", path)).toBeLessThan(at("rename", path));
    }
    // Made with its mode (0640), so no chmod after.
    for (const { path } of written) expect(at("chmod", path)).toBe(-1);
    // No file is opened again to be synced later.
    expect(events.filter((e) => e.op === "open" && e.flags !== "wx")).toEqual([]);
    for (const [path, body] of bodies) expect(readFileSync(join(to, path)).equals(body)).toBe(true);
    expect(statSync(join(to, "d/c.txt")).mode & 0o7777).toBe(0o640);
    // Set through the handle before the rename; utimes takes microseconds.
    expect(statSync(join(to, "d/c.txt"), { bigint: true }).mtimeNs / 1000n).toBe(BigInt(T) / 1000n);
    expect(statSync(join(to, "a.txt")).ino).toBe(statSync(join(to, "b.txt")).ino);
  });

  it("fsyncs a small file whose size a truncate set (zeros at its end left as a hole): durable writes do not cover it", async () => {
    const text = "x".repeat(64 * 1024) + "\0".repeat(128 * 1024);
    const { to, report } = await restore([file("holey.bin", text), file("plain.txt", "plain")]);
    expect(report.failures).toEqual([]);
    const holey = events.find((e) => e.op === "open" && e.durable && events.some((t) => t.op === "truncate" && t.path === e.path))?.path ?? "";
    expect(holey).not.toBe("");
    expect(at("truncate", holey)).toBeLessThan(at("fsync", holey));
    expect(at("fsync", holey)).toBeLessThan(at("rename", holey));
    expect(events.filter((e) => e.op === "fsync")).toHaveLength(1);
    expect(readFileSync(join(to, "holey.bin"), "utf8")).toBe(text);
  });

  it("restores files whose mode denies their owner reading (000, 200): made durable before the mode is set", async () => {
    // As root the disk would let any order pass; the first test's order (durable before chmod, no reopen) is what makes
    // this hold for any user.
    const files = [file("none.txt", "none", 0o000), file("write-only.txt", "wo", 0o200)];
    const { to, report } = await restore(files);
    expect(report.failures).toEqual([]);
    expect(report.files).toBe(2);
    expect(statSync(join(to, "none.txt")).mode & 0o7777).toBe(0o000);
    expect(statSync(join(to, "write-only.txt")).mode & 0o7777).toBe(0o200);
    expect(statSync(join(to, "none.txt")).size).toBe(4);
    // 000 needs a chmod (the file is made writable by its owner), after its durable write; 200 is made as it is.
    const chmods = events.filter((e) => e.op === "chmod");
    expect(chmods.map((e) => events.find((o) => o.op === "open" && o.path === e.path)?.mode)).toEqual([0o000]);
    for (const { path } of chmods) {
      expect(events.find((o) => o.op === "open" && o.path === path)?.durable).toBe(true);
      expect(at("write", path)).toBeLessThan(at("chmod", path));
    }
  });

  const setpriv = process.getuid?.() === 0 && existsSync("/usr/bin/setpriv");
  it.runIf(setpriv)("restores a mode 000 file as root without the right to bypass permissions (setpriv drops it)", () => {
    // Root reads any file, so the test above cannot tell; a child without CAP_DAC_OVERRIDE is the ordinary user.
    const dir = tempDir("tidemark-fsync-");
    dirs.push(dir);
    const script = join(dir.path, "restore.ts");
    writeFileSync(
      script,
      `import { createHash } from "node:crypto";
import { writeRecoveryPoint } from ${JSON.stringify(resolve("agent/restore-writer.ts"))};
const body = Buffer.from("secret");
const sha256 = createHash("sha256").update(body).digest("hex");
const entries = [["none", 0o000], ["write-only", 0o200]].map(([path, mode]) => ({ path, kind: "file", size: body.length, mode, mtimeNs: "${T}", sha256 }));
const report = await writeRecoveryPoint({ entries, content: async () => body }, ${JSON.stringify(join(dir.path, "out"))});
console.log(JSON.stringify({ files: report.files, failures: report.failures }));
`,
    );
    const out = execFileSync("/usr/bin/setpriv", ["--inh-caps=-all", "--bounding-set=-all", process.execPath, script], { encoding: "utf8" });
    expect(JSON.parse(out)).toEqual({ files: 2, failures: [] });
    expect(statSync(join(dir.path, "out/none")).mode & 0o7777).toBe(0o000);
  });

  it("does not restore a file whose bytes cannot be synced, nor its hard link: nothing at their names, no temp left", async () => {
    const big = "a".repeat(DURABLE_WRITE_BYTES + 1);
    control.failFsync = big;
    const files = [file("a.txt", big, 0o640, "g"), file("b.txt", big, 0o640, "g"), file("d/c.txt", "c")];
    const { to, report } = await restore(files);
    expect(report.failures.map((f) => f.path)).toEqual(["a.txt", "b.txt"]);
    expect(report.failures[0]?.reason).toMatch(/EIO/);
    expect(report).toMatchObject({ files: 1, hardLinks: 0 });
    expect(existsSync(join(to, "a.txt")) || existsSync(join(to, "b.txt"))).toBe(false);
    expect(readdirSync(to).sort()).toEqual(["d"]);
    expect(readdirSync(join(to, "d"))).toEqual(["c.txt"]);
    // Only c.txt was renamed into place; the failed temps were removed, never renamed.
    expect(events.filter((e) => e.op === "rename")).toHaveLength(1);
  });

  it("does not restore a small file whose durable write fails, nor its hard link: nothing at their names, no temp left", async () => {
    control.failWrite = "a";
    const files = [file("a.txt", "a", 0o640, "g"), file("b.txt", "a", 0o640, "g"), file("d/c.txt", "c")];
    const { to, report } = await restore(files);
    expect(report.failures.map((f) => f.path)).toEqual(["a.txt", "b.txt"]);
    expect(report.failures[0]?.reason).toMatch(/EIO/);
    expect(report).toMatchObject({ files: 1, hardLinks: 0 });
    expect(readdirSync(to).sort()).toEqual(["d"]);
    expect(readdirSync(join(to, "d"))).toEqual(["c.txt"]);
    expect(events.filter((e) => e.op === "rename")).toHaveLength(1);
  });

  it("never names a small file whose bytes are not its sha256, although its durable write put them on disk", async () => {
    const [entry] = file("bad.txt", "good");
    const { to, report } = await restore([[entry, Buffer.from("evil")], file("d/ok.txt", "ok")]);
    expect(report.failures).toEqual([{ path: "bad.txt", reason: expect.stringMatching(/the content read has sha256 \w+, the recovery point's \w+/) as string }]);
    const bad = events.find((e) => e.op === "open" && e.durable && events.some((w) => w.op === "write" && w.path === e.path) && !events.some((r) => r.op === "rename" && r.path === e.path));
    expect(bad).toBeDefined();
    expect(readdirSync(to).sort()).toEqual(["d"]);
    expect(readdirSync(join(to, "d"))).toEqual(["ok.txt"]);
  });

  it("holds no more temp files at once than files are written at once (each is named as soon as it is synced)", async () => {
    const files = Array.from({ length: WRITE_CONCURRENCY * 3 }, (_, i) => file(`d/f${i}.txt`, `file ${i}`));
    let most = 0;
    const { report } = await restore(files, (to) => {
      const temps = readdirSync(join(to, "d")).filter((name) => name.startsWith(".tm-")).length;
      most = Math.max(most, temps);
    });
    expect(report.failures).toEqual([]);
    expect(report.files).toBe(files.length);
    expect(most).toBeGreaterThan(0);
    expect(most).toBeLessThanOrEqual(WRITE_CONCURRENCY);
  });
});
