// A folder of a set swapped for a symlink while the agent reads the tree (QA
// round 4, Q1/Q2): `mv p p.old && ln -s /etc p`, done by anyone who may write
// in the tree between the scan's listing of p's parent and its read of p, made
// the agent (often root) follow the symlink and replicate /etc/shadow into the
// mirror and into the marker's snapshot. Symlinks in a set are never followed:
// folders and files are read only where they must be (agent/set-files.ts).

import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { capture } from "../../agent/capture.ts";
import { readFolder } from "../../agent/folder-stats.ts";
import type * as FolderStats from "../../agent/folder-stats.ts";
import { Journal } from "../../agent/journal.ts";
import { barrierScan } from "../../agent/scan.ts";
import { openInSet, OutsideSetError, registerSetRoot } from "../../agent/set-files.ts";
import type { SetSpec } from "../../agent/set-spec.ts";
import { tempDir } from "../support/tree.ts";

/** The test's hook, run when the scan asks for the listing of `dir` (after the parent's listing and p's capture). */
const beforeListing = vi.hoisted(() => ({ dir: "", run: undefined as (() => void) | undefined }));
vi.mock("../../agent/folder-stats.ts", async (importOriginal) => {
  const real = await importOriginal<typeof FolderStats>();
  return {
    ...real,
    readFolder: (dir: string, realPath?: string) => {
      if (dir === beforeListing.dir && beforeListing.run) {
        beforeListing.run();
        beforeListing.run = undefined;
      }
      return real.readFolder(dir, realPath);
    },
  };
});

const SET = "data";
const SECRET = "root:$6$secret-hash:19000:0:99999:7:::\n";
let base: ReturnType<typeof tempDir>;
let root: string;
let outside: string;
let journal: Journal;
let spec: SetSpec;

beforeEach(() => {
  base = tempDir("tidemark-swap-");
  root = join(base.path, "root");
  outside = join(base.path, "etc");
  mkdirSync(join(root, "p", "sub"), { recursive: true });
  writeFileSync(join(root, "p", "shadow"), "the set's own file\n");
  writeFileSync(join(root, "p", "sub", "a.txt"), "alpha\n");
  // What lies outside the set, under the same names.
  mkdirSync(join(outside, "sub"), { recursive: true });
  writeFileSync(join(outside, "shadow"), SECRET);
  writeFileSync(join(outside, "secret.key"), SECRET);
  writeFileSync(join(outside, "sub", "a.txt"), SECRET);
  journal = Journal.open(join(base.path, "state"));
  spec = { name: SET, root, exclude: [] };
});

afterEach(() => {
  beforeListing.run = undefined;
  journal.close();
  base.remove();
});

/** p, a folder of the set, swapped for a symlink to the folder outside it. */
function swapForSymlink(): void {
  renameSync(join(root, "p"), join(base.path, "p.old"));
  symlinkSync(outside, join(root, "p"));
}

/** Every content the journal holds for the set, as text (inline contents), and its indexed paths. */
function journaled(): { paths: string[]; texts: string[] } {
  const paths = [...journal.index.allEntries(SET)].map((entry) => entry.path);
  const texts: string[] = [];
  for (const record of journal.pending(SET, 0, 1_000_000)) if (record.op === "put" && "bytes" in record.content) texts.push(Buffer.from(record.content.bytes).toString());
  return { paths, texts };
}

it("a scan whose folder is swapped for a symlink after its parent's listing reads nothing through it, and says the folder changed while read", async () => {
  // The first scan indexes the tree as it is.
  await barrierScan(journal, spec);
  expect(journaled().paths).toEqual(expect.arrayContaining(["p", "p/shadow", "p/sub", "p/sub/a.txt"]));
  writeFileSync(join(root, "p", "shadow"), "the set's own file, changed\n");
  writeFileSync(join(root, "p", "new.txt"), "new\n");
  // The next scan lists the root and captures p (a folder), then p is swapped before the scan lists p.
  beforeListing.dir = join(root, "p");
  beforeListing.run = swapForSymlink;
  const changing: string[] = [];
  await barrierScan(journal, spec, { onChangingWhileRead: (path) => changing.push(path) });
  const { paths, texts } = journaled();
  expect(texts.filter((text) => text === SECRET)).toEqual([]);
  expect(paths).not.toContain("p/secret.key");
  expect(changing).toContain("p");
  // p is no folder now: what was below it is deleted (the symlink itself is not captured by this scan).
  expect(paths.filter((path) => path.startsWith("p"))).toEqual([]);
  // The next scan captures the symlink from its parent's listing: what was below p goes, nothing from outside comes.
  await barrierScan(journal, spec);
  const after = journaled();
  expect(after.paths.filter((path) => path.startsWith("p"))).toEqual(["p"]);
  expect([...journal.index.allEntries(SET)].find((entry) => entry.path === "p")).toMatchObject({ kind: "symlink", link: outside });
  expect(after.texts.filter((text) => text === SECRET)).toEqual([]);
});

it("a folder reached through a folder above it swapped for a symlink is not listed, and nothing below it is deleted on that word", async () => {
  await barrierScan(journal, spec);
  writeFileSync(join(root, "p", "sub", "b.txt"), "beta\n");
  beforeListing.dir = join(root, "p", "sub");
  beforeListing.run = swapForSymlink;
  const changing: string[] = [];
  await barrierScan(journal, spec, { onChangingWhileRead: (path) => changing.push(path) });
  expect(changing).toContain("p/sub");
  const { paths, texts } = journaled();
  expect(texts.filter((text) => text === SECRET)).toEqual([]);
  expect(paths).not.toContain("p/sub/b.txt");
  expect(paths).toContain("p/sub/a.txt");
});

it("a capture of a file whose folder became a symlink (the watcher's hint) reads nothing out of the tree", async () => {
  await barrierScan(journal, spec);
  swapForSymlink();
  const changing: string[] = [];
  for (const path of ["p/shadow", "p/secret.key", "p/sub/a.txt"]) {
    expect(await capture(journal, spec, path, { onChangingWhileRead: (changed) => changing.push(changed) })).toEqual({ changes: [], isDirectory: false });
  }
  expect(changing).toEqual(["p/shadow", "p/secret.key", "p/sub/a.txt"]);
  expect(journaled().texts.filter((text) => text === SECRET)).toEqual([]);
});

it("lists a folder and opens a file only where they must be: never a folder or file that is a symlink, nor through one", async () => {
  registerSetRoot(root);
  expect((await readFolder(join(root, "p"), join(root, "p"))).map((entry) => entry.name).sort()).toEqual(["shadow", "sub"]);
  const handle = await openInSet(join(root, "p", "shadow"));
  expect((await handle.readFile()).toString()).toBe("the set's own file\n");
  await handle.close();
  swapForSymlink();
  // The folder itself a symlink now: not listed (not a folder: ENOTDIR); a folder below it: reached through it, not listed.
  await expect(readFolder(join(root, "p"), join(root, "p"))).rejects.toMatchObject({ code: "ENOTDIR" });
  await expect(readFolder(join(root, "p", "sub"), join(root, "p", "sub"))).rejects.toMatchObject({ code: "EOUTSIDESET" });
  await expect(openInSet(join(root, "p", "shadow"))).rejects.toThrow(OutsideSetError);
  // A file that is a symlink itself is not opened through it.
  rmSync(join(root, "p"));
  mkdirSync(join(root, "q"));
  symlinkSync(join(outside, "shadow"), join(root, "q", "shadow"));
  await expect(openInSet(join(root, "q", "shadow"))).rejects.toMatchObject({ code: "ELOOP" });
  // A root that is itself a symlink is followed (the root looks judge it), and its files are read below its real path.
  unlinkSync(join(root, "q", "shadow"));
  writeFileSync(join(root, "q", "own.txt"), "own\n");
  const linkedRoot = join(base.path, "linked-root");
  symlinkSync(root, linkedRoot);
  registerSetRoot(linkedRoot);
  expect((await readFolder(linkedRoot)).map((entry) => entry.name)).toEqual(["q"]);
  const own = await openInSet(join(linkedRoot, "q", "own.txt"));
  expect((await own.readFile()).toString()).toBe("own\n");
  await own.close();
  expect(readFileSync(join(linkedRoot, "q", "own.txt"), "utf8")).toBe("own\n");
});

it("entries the index holds below a symlink (left by an agent that read through one) are deleted by the next whole scan", async () => {
  await barrierScan(journal, spec);
  // As an older agent left them: p a symlink in the index, with entries still below it.
  journal.append(SET, [{ op: "symlink", path: "p", target: outside, mtimeNs: "0" }]);
  expect(journaled().paths).toEqual(expect.arrayContaining(["p", "p/shadow", "p/sub/a.txt"]));
  swapForSymlink();
  await barrierScan(journal, spec);
  expect(journaled().paths.filter((path) => path.startsWith("p"))).toEqual(["p"]);
  const deletes = journal.pending(SET, 0, 1_000_000).filter((record) => record.op === "delete").map((record) => (record.op === "delete" ? record.path : ""));
  expect(deletes).toEqual(expect.arrayContaining(["p/shadow", "p/sub/a.txt", "p/sub"]));
});
