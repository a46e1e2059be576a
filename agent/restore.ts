// `tidemark restore`: a snapshot's manifest turned back into a tree on disk:
// contents checked against their sha256, modes, mtimes, symlinks and empty
// folders. Files go to a temp name and are renamed into place; symlinks are
// made last, so no write ever goes through a link the snapshot contains.

import { lstat, mkdir, open, readdir, realpath, rename, rm, symlink, utimes, chmod, lutimes } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { mapConcurrent } from "../contract/async.ts";
import { setPathProblem } from "../contract/paths.ts";
import type { SnapshotEntry, SnapshotSummary } from "../contract/tasks.ts";
import { readManifest, snapshotContent } from "../lambdas/tasks/snapshots.ts";
import type { TargetStore } from "../lambdas/store/store.ts";
import type { Progress } from "./operations.ts";

export class RestoreError extends Error {
  override name = "RestoreError";
}

export interface RestoreResult {
  readonly snapshot: string;
  readonly to: string;
  readonly files: number;
  readonly dirs: number;
  readonly symlinks: number;
  readonly bytes: number;
}

/** Files fetched at once. */
const RESTORE_CONCURRENCY = 8;

/**
 * mtimeNs as the seconds utimes takes. A double near 2^31 seconds resolves
 * about a quarter of a microsecond and the conversion truncates: half a
 * microsecond more lands on the right one.
 */
function seconds(mtimeNs: string): number {
  return (Number(BigInt(mtimeNs) / 1000n) + 0.5) / 1e6;
}

async function isEmptyDir(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length === 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw error;
  }
}

/** The absolute path of entry inside root, refusing anything that would land outside it (through `..` or a symlink already there). */
async function inside(root: string, path: string): Promise<string> {
  const problem = setPathProblem(path);
  if (problem) throw new RestoreError(`snapshot entry ${JSON.stringify(path)} cannot be restored: ${problem}`);
  const target = join(root, path);
  const parent = await realpath(dirname(target)).catch(() => dirname(target));
  const rel = relative(root, parent);
  if (rel.startsWith(`..${sep}`) || rel === "..") throw new RestoreError(`snapshot entry ${path} would be written outside ${root}`);
  return target;
}

async function replaceWithDir(path: string, mode: number): Promise<void> {
  const existing = await lstat(path).catch(() => undefined);
  if (existing && !existing.isDirectory()) await rm(path, { force: true });
  await mkdir(path, { recursive: true, mode: 0o700 });
  await chmod(path, mode | 0o700);
}

export interface RestoreOptions {
  readonly force?: boolean;
  readonly onProgress?: (progress: Progress) => void;
}

export async function restoreSnapshot(store: TargetStore, summary: SnapshotSummary, to: string, options: RestoreOptions = {}): Promise<RestoreResult> {
  await checkDestination(to, options);
  const entries = await readManifest(store, summary);
  return { snapshot: summary.id, ...(await writeEntries(entries, (entry) => snapshotContent(store, summary.set, entry), to, options)) };
}

/** Refuses a destination that is not empty unless forced, before anything is read or written. */
export async function checkDestination(to: string, options: RestoreOptions): Promise<void> {
  if (!options.force && !(await isEmptyDir(to))) {
    throw new RestoreError(`${to} is not empty; restore into an empty folder, or pass --force to write over what is there`);
  }
}

/** Writes a list of entries (folders before what they hold) into `to`, each file's bytes from `content`. */
export async function writeEntries(
  entries: readonly SnapshotEntry[],
  content: (entry: SnapshotEntry) => Promise<Buffer>,
  to: string,
  options: RestoreOptions,
): Promise<Omit<RestoreResult, "snapshot">> {
  await mkdir(to, { recursive: true });
  const root = await realpath(to);
  const dirs = entries.filter((e) => e.kind === "dir");
  const files = entries.filter((e) => e.kind === "file");
  const links = entries.filter((e) => e.kind === "symlink");
  const totalBytes = files.reduce((sum, e) => sum + e.size, 0);
  let bytes = 0;
  let done = 0;
  const report = () => options.onProgress?.({ phase: "restore", files: done, totalFiles: files.length, bytes, totalBytes });

  // Folders first (writable while filled), parents before children.
  for (const dir of dirs) await replaceWithDir(await inside(root, dir.path), dir.mode);
  await mapConcurrent(files, RESTORE_CONCURRENCY, async (entry: SnapshotEntry) => {
    const target = await inside(root, entry.path);
    await mkdir(dirname(target), { recursive: true });
    const body = await content(entry);
    const temp = `${target}.tidemark-restore`;
    const handle = await open(temp, "w", entry.mode);
    try {
      await handle.writeFile(body);
      await handle.chmod(entry.mode);
      await handle.sync();
    } finally {
      await handle.close();
    }
    const existing = await lstat(target).catch(() => undefined);
    if (existing?.isDirectory()) await rm(target, { recursive: true, force: true });
    await rename(temp, target);
    await utimes(target, seconds(entry.mtimeNs), seconds(entry.mtimeNs));
    bytes += body.length;
    done += 1;
    report();
  });
  for (const link of links) {
    const target = await inside(root, link.path);
    await rm(target, { recursive: true, force: true });
    await symlink(link.link ?? "", target);
    await lutimes(target, seconds(link.mtimeNs), seconds(link.mtimeNs));
  }
  // Folder modes and mtimes last, deepest first: filling a folder moves its mtime.
  for (const dir of [...dirs].reverse()) {
    const target = join(root, dir.path);
    await chmod(target, dir.mode);
    await utimes(target, seconds(dir.mtimeNs), seconds(dir.mtimeNs));
  }
  report();
  return { to: root, files: files.length, dirs: dirs.length, symlinks: links.length, bytes };
}
