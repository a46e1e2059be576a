// Barrier scan (DESIGN 2): stat every entry of a set against the index and
// journal whatever differs. Watcher events are only hints; this is the truth.
// It walks one directory at a time and reads the index one directory at a
// time, so memory stays flat on large trees.

import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { setPathProblem } from "../contract/paths.ts";
import { capture, deletesFor } from "./capture.ts";
import type { Change, Journal } from "./journal.ts";
import { isExcluded, type SetSpec } from "./set-spec.ts";

export interface ScanReport {
  /** Entries looked at. */
  entries: number;
  /** Changes journaled. */
  changes: number;
  /** Names that cannot be replicated (e.g. a backslash in a name), with why. */
  skipped: { path: string; reason: string }[];
}

/** Journals in chunks so one huge directory does not make one huge transaction. */
const APPEND_CHUNK = 500;
/** Files read at once: enough to keep the disk and the thread pool busy, few enough to bound memory. */
const CAPTURE_CONCURRENCY = 16;

/** Maps items with at most `limit` calls in flight; results keep the items' order. */
async function mapConcurrent<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  // One iterator shared by the workers: each takes the next item when it is free.
  const queue = items.entries();
  const worker = async () => {
    for (const [index, item] of queue) results[index] = await fn(item);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function joinPath(dir: string, name: string): string {
  return dir === "" ? name : `${dir}/${name}`;
}

export async function barrierScan(journal: Journal, spec: SetSpec, from = ""): Promise<ScanReport> {
  const report: ScanReport = { entries: 0, changes: 0, skipped: [] };
  const pending: Change[] = [];
  const flush = () => {
    journal.append(spec.name, pending);
    report.changes += pending.length;
    pending.length = 0;
  };

  if (from !== "") {
    // Scanning a subtree starts with the subtree's own root.
    const top = await capture(journal, spec, from);
    pending.push(...top.changes);
    flush();
    if (!top.isDirectory) return report;
  }

  const dirs = [from];
  while (dirs.length > 0) {
    const dir = dirs.pop() ?? "";
    let listing;
    try {
      listing = await readdir(join(spec.root, dir), { withFileTypes: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT" && code !== "ENOTDIR") throw error;
      // The directory vanished while scanning: forget it and what was below.
      if (dir !== "") pending.push(...deletesFor(journal, spec.name, dir));
      flush();
      continue;
    }
    const seen = new Set<string>();
    const subdirs: string[] = [];
    const paths: string[] = [];
    listing.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const dirent of listing) {
      const path = joinPath(dir, dirent.name);
      const problem = setPathProblem(path);
      if (problem) {
        report.skipped.push({ path, reason: problem });
        continue;
      }
      if (isExcluded(spec, path)) continue;
      seen.add(path);
      paths.push(path);
    }
    report.entries += paths.length;
    // Entries of one directory are independent: read them in parallel, journal them in name order.
    for (let i = 0; i < paths.length; i += APPEND_CHUNK) {
      const results = await mapConcurrent(paths.slice(i, i + APPEND_CHUNK), CAPTURE_CONCURRENCY, (path) => capture(journal, spec, path));
      results.forEach((result, k) => {
        pending.push(...result.changes);
        if (result.isDirectory) subdirs.push(paths[i + k] ?? "");
      });
      if (pending.length >= APPEND_CHUNK) flush();
    }
    for (const entry of journal.children(spec.name, dir)) {
      if (!seen.has(entry.path)) pending.push(...deletesFor(journal, spec.name, entry.path));
    }
    flush();
    // Depth-first, in name order: push in reverse so the first name is scanned first.
    for (const sub of subdirs.reverse()) dirs.push(sub);
  }
  return report;
}
