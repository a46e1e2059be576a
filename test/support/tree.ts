// Test helpers: temp folders, and a comparable picture of a tree, from the
// source folder or from the target's live mirror.

import { mkdtempSync, rmSync } from "node:fs";
import { lstat, open, readFile, readdir, readlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dataPrefix, decodeMeta } from "../../contract/layout.ts";
import type { TargetStore } from "../../lambdas/store/store.ts";
import { pendingFolderWrites } from "../../lambdas/applier/folder-writes.ts";
import { sha256Of } from "./content.ts";

export type TreePicture = Record<string, string>;

export function tempDir(prefix = "tidemark-test-"): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** The first `length` bytes of a file, and its size: a restored volume is a sparse file of whole GiB, too large to read whole. */
export async function readHead(path: string, length: number): Promise<{ head: Buffer; size: number }> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(length);
    await handle.read(head, 0, length, 0);
    return { head, size: (await handle.stat()).size };
  } finally {
    await handle.close();
  }
}

/** One line per entry: kind, mode, mtime and content hash (or link target). */
export async function pictureOfSource(
  root: string,
  options: { dirMtimes?: boolean; skip?: (path: string) => boolean; microseconds?: boolean } = {},
): Promise<TreePicture> {
  const picture: TreePicture = {};
  // A restore sets mtimes through utimes, which keeps microseconds, not nanoseconds.
  const time = (ns: bigint) => (options.microseconds ? `${ns / 1000n}us` : String(ns));
  const walk = async (dir: string, prefix: string) => {
    for (const dirent of await readdir(dir, { withFileTypes: true })) {
      const abs = join(dir, dirent.name);
      const path = prefix ? `${prefix}/${dirent.name}` : dirent.name;
      if (options.skip?.(path)) continue;
      const st = await lstat(abs, { bigint: true });
      const mode = (st.mode & 0o7777n).toString(8);
      if (st.isDirectory()) {
        picture[path] = `dir ${mode}${options.dirMtimes ? ` ${time(st.mtimeNs)}` : ""}`;
        await walk(abs, path);
      } else if (st.isSymbolicLink()) {
        picture[path] = `symlink -> ${await readlink(abs)} ${time(st.mtimeNs)}`;
      } else if (st.isFile()) {
        picture[path] = `file ${mode} ${time(st.mtimeNs)} ${sha256Of(await readFile(abs))}`;
      }
    }
  };
  await walk(root, "");
  return picture;
}

/** The same picture from the live mirror of a set; file hashes are of the stored bytes, not the metadata. */
export async function pictureOfTarget(store: TargetStore, set: string, options: { dirMtimes?: boolean } = {}): Promise<TreePicture> {
  const picture: TreePicture = {};
  const prefix = dataPrefix(set);
  for await (const info of store.list(prefix)) {
    const object = await store.get(info.key);
    const meta = decodeMeta(object?.meta);
    if (!object || !meta) throw new Error(`object ${info.key} has no tidemark metadata`);
    const path = info.key.slice(prefix.length).replace(/\/$/, "");
    const mode = meta.mode.toString(8);
    if (meta.kind === "dir") picture[path] = `dir ${mode}${options.dirMtimes ? ` ${meta.mtimeNs}` : ""}`;
    else if (meta.kind === "symlink") picture[path] = `symlink -> ${object.body.toString("utf8")} ${meta.mtimeNs}`;
    else picture[path] = `file ${mode} ${meta.mtimeNs} ${sha256Of(object.body)}`;
  }
  // Folder writes the applier left for later are part of the live mirror as its readers see it.
  for (const [path, write] of await pendingFolderWrites(store, set)) picture[path] = `dir ${write.mode.toString(8)}${options.dirMtimes ? ` ${write.mtimeNs}` : ""}`;
  return picture;
}
