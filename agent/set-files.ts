// Reads of a set's files and folders that cannot be led out of the set's tree.
// The agent lists a folder and reads a file by its path below the set's root.
// Anyone who may write in the tree can replace a folder on that path by a
// symlink between the scan's look at it and the read (`mv p p.old && ln -s /etc
// p`), and the read then follows the symlink out of the set: the agent, often
// root, would replicate /etc/shadow into the mirror and into a recovery point.
// Symlinks in the tree are never followed, so each file and folder is opened
// first and then asked where it is (/proc/self/fd: the file the descriptor
// holds, whatever its path does next), and read through that descriptor only
// when it is the set's entry at that path.

import { closeSync, constants, openSync, readlinkSync } from "node:fs";
import { open, realpath, type FileHandle } from "node:fs/promises";

/** Where a process's open descriptors are named (Linux). */
const PROC_FD = "/proc/self/fd";

/** What Linux appends to the name of a descriptor's file that was deleted. */
const DELETED = " (deleted)";

/** A set's root (as configured) and its real path as last resolved: a root may itself be a symlink, or lie below one. */
const realRoots = new Map<string, string>();

/** An entry whose path leads out of the set's tree now: not read. Its path is taken as changing while read. */
export class OutsideSetError extends Error {
  override name = "OutsideSetError";
  readonly code = "EOUTSIDESET";
}

/** The roots whose files openInSet checks: each set's, told before its first read (capture.ts). */
export function registerSetRoot(root: string): void {
  if (!realRoots.has(root)) realRoots.set(root, root);
}

/** The registered root whose tree `abs` lies in (sets do not overlap). */
function rootOf(abs: string): string | undefined {
  for (const root of realRoots.keys()) if (abs.startsWith(root.endsWith("/") ? root : `${root}/`)) return root;
  return undefined;
}

/** Where the descriptor's file is; undefined where the system cannot say (no /proc: not checked). */
function whereIs(fd: number): string | undefined {
  try {
    return readlinkSync(`${PROC_FD}/${fd}`);
  } catch {
    return undefined;
  }
}

/**
 * Whether the file open at `fd` is the set's entry at `abs`: the descriptor's path is abs below the root's real path.
 * The root's real path is resolved again once before saying no (a symlinked root re-pointed, a parent renamed).
 */
async function isAt(fd: number, abs: string): Promise<{ ok: boolean; at: string }> {
  const at = whereIs(fd);
  if (at === undefined || at === abs) return { ok: true, at: at ?? abs };
  const root = rootOf(abs);
  if (root === undefined) return { ok: false, at };
  const below = abs.slice(root.length);
  if (at === `${realRoots.get(root) ?? root}${below}`) return { ok: true, at };
  const real = await realpath(root).catch(() => root);
  realRoots.set(root, real);
  return { ok: at === `${real}${below}`, at };
}

/** The message of an entry found out of the tree. */
const outside = (abs: string, at: string) =>
  `${abs} leads out of the set's tree (to ${at}): a folder on its path was replaced by a symlink while the agent read it; not read (symlinks in a set are never followed)`;

/**
 * Opens a file of a set's tree for reading: never through a symlink, neither the file itself (ELOOP: it became one
 * since its lstat) nor a folder on its path (OutsideSetError). Read through the handle only.
 */
export async function openInSet(abs: string): Promise<FileHandle> {
  const handle = await open(abs, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const { ok, at } = await isAt(handle.fd, abs);
    // Deleted since it was opened: gone, as if the open had come a moment later (the capture looks again).
    if (!ok && at.endsWith(DELETED)) throw Object.assign(new Error(`ENOENT: ${abs} was deleted while it was opened`), { code: "ENOENT" });
    if (!ok) throw new OutsideSetError(outside(abs, at));
    return handle;
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * Opens a folder of a set's tree for listing (through `${PROC_FD}/<fd>`), synchronously, on the folder worker's
 * thread: `real`, its path below the root's real path, is where it must be. A folder (not the root) that became a
 * symlink fails ENOTDIR (it is no folder); one reached through a symlink on its path fails OutsideSetError. Undefined `real`: the root,
 * followed if it is a symlink (the root looks judge it). Returns the descriptor, and the path to list and lstat it by.
 */
export function openFolderInSet(dir: string, real: string | undefined): { fd: number; path: string } {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | (real === undefined ? 0 : constants.O_NOFOLLOW));
  const at = whereIs(fd);
  if (at === undefined) return { fd, path: dir };
  if (real !== undefined && at !== real) {
    closeSync(fd);
    throw new OutsideSetError(outside(dir, at));
  }
  return { fd, path: `${PROC_FD}/${fd}` };
}

/** The real path of a set's root now (a scan checks its folders against it), remembered for openInSet. */
export async function resolveSetRoot(root: string): Promise<string> {
  registerSetRoot(root);
  const real = await realpath(root).catch(() => root);
  realRoots.set(root, real);
  return real;
}
