// What a batch of watcher hints names that is gone from the source: large
// files (one that reappears under another name with the same content moved,
// and travels as a rename) and folders. The large files below a vanished
// folder count too, so a folder moved within the set moves its large files on
// the target instead of sending their content again; the folder's deletes are
// journaled after the batch's renames (DESIGN 2: a rename before the delete of
// its source). A barrier scan finds the same as it goes (`vanish`), and
// journals the deletes it held back at its end.

import { lstat } from "node:fs/promises";
import { join } from "node:path";
import { BLOCK_SIZE } from "../contract/wire.ts";
import type { Change, IndexEntry, Journal } from "./journal.ts";
import type { SetSpec } from "./set-spec.ts";

type PutChange = Extract<Change, { op: "put" }>;

/** A file large enough that sending it again costs more than a rename: at least a block, its content hashed. */
function isLarge(entry: IndexEntry): boolean {
  return entry.kind === "file" && entry.sha256 !== null && entry.size >= BLOCK_SIZE;
}

async function isGone(abs: string): Promise<boolean> {
  try {
    await lstat(abs);
    return false;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return true;
    throw error;
  }
}

export class VanishedEntries {
  /** Large files gone from the source and not yet renamed, by path. */
  readonly #files = new Map<string, IndexEntry>();
  /** The same, by sha256: a folder moved in may hold thousands of puts to match. */
  readonly #bySha = new Map<string, Set<IndexEntry>>();
  /** Indexed folders gone from the source, none below another. */
  readonly folders: string[] = [];

  /** Looks up each path (sorted, so a folder comes before what it held) in the index and on the disk. */
  static async of(journal: Journal, spec: SetSpec, sorted: readonly string[]): Promise<VanishedEntries> {
    const vanished = new VanishedEntries();
    for (const path of sorted) {
      if (path === "" || vanished.isBelowFolder(path)) continue;
      const known = journal.index.entry(spec.name, path);
      if (!known || (known.kind !== "dir" && !isLarge(known))) continue;
      if (await isGone(join(spec.root, path))) vanished.#hold(journal, spec.name, known);
    }
    return vanished;
  }

  /** An indexed entry found gone: true when it is held (a folder or a large file), its deletes left to the caller once the renames are journaled. */
  vanish(journal: Journal, set: string, path: string): boolean {
    const known = journal.index.entry(set, path);
    if (!known || (known.kind !== "dir" && !isLarge(known))) return false;
    this.#hold(journal, set, known);
    return true;
  }

  #hold(journal: Journal, set: string, known: IndexEntry): void {
    if (known.kind === "file") {
      this.#add(known);
      return;
    }
    this.folders.push(known.path);
    for (const entry of journal.index.descendants(set, known.path)) if (isLarge(entry)) this.#add(entry);
  }

  #add(entry: IndexEntry): void {
    this.#files.set(entry.path, entry);
    if (entry.sha256 === null) return;
    const same = this.#bySha.get(entry.sha256) ?? new Set<IndexEntry>();
    same.add(entry);
    this.#bySha.set(entry.sha256, same);
  }

  get size(): number {
    return this.#files.size;
  }

  /** Vanished large files not renamed (yet). */
  paths(): string[] {
    return [...this.#files.keys()];
  }

  has(path: string): boolean {
    return this.#files.has(path);
  }

  /** True for a path inside a vanished folder (the folder's deletes cover it). */
  isBelowFolder(path: string): boolean {
    return this.folders.some((folder) => path.startsWith(`${folder}/`));
  }

  /** True for a vanished folder or a path inside one. */
  inFolder(path: string): boolean {
    return this.folders.includes(path) || this.isBelowFolder(path);
  }

  /**
   * The vanished file a new file's put is (same sha256, size, mode and mtime: the content the put just read), taken so
   * no other put claims it; `usable` says whether a candidate may still be renamed.
   */
  take(put: PutChange, usable: (entry: IndexEntry) => boolean): IndexEntry | undefined {
    for (const entry of this.#bySha.get(put.sha256) ?? []) {
      if (entry.size !== put.size || entry.mode !== put.mode || entry.mtimeNs !== put.mtimeNs || !usable(entry)) continue;
      this.#files.delete(entry.path);
      this.#bySha.get(put.sha256)?.delete(entry);
      return entry;
    }
    return undefined;
  }
}
