// A recovery drill: the recovery point restored into a scratch folder, every
// entry of the restored tree compared with the recovery point (content
// sha256, kind, mode as restore writes it, mtime, link targets, hard-link
// groups, nothing extra),
// the application's own check run inside it, the whole timed (RTO) and the
// point's age measured (RPO). The report says pass or fail and names every
// bad path.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { chmod, lstat, mkdtemp, readdir, readlink, rm } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { MAX_CHECK_OUTPUT_CHARS, MAX_REPORTED_PROBLEM_BYTES, MAX_REPORTED_PROBLEMS, type DrillReport } from "../contract/drills.ts";
import { newTaskId, type ChangingWhileRead } from "../contract/tasks.ts";
import { readTaskResult, type TargetStore } from "../lambdas/target/index.ts";
import { hookSucceeded, runHook } from "./hooks.ts";
import type { Progress } from "./operations.ts";
import { resolveRecoveryPoint } from "./recovery-points.ts";
import { extraEntries, floorMicros, restoredMode, writeRecoveryPoint, type RecoveryEntry, type RestoreFailure, type SetIdDropped } from "./restore-writer.ts";

export interface DrillOptions {
  /** A snapshot id, or "latest". @default "latest" */
  readonly snapshot?: string;
  /** A moment in time (point-in-time restore). */
  readonly at?: string;
  /** Where to restore (empty or missing). @default a new folder under the OS's temporary folder */
  readonly to?: string;
  /** Shell command run inside the restored tree; a non-zero exit fails the drill. */
  readonly check?: string;
  /** Keep the restored tree. */
  readonly keep?: boolean;
  /** @default 30 minutes */
  readonly checkTimeoutMs?: number;
  readonly onProgress?: (progress: Progress) => void;
  readonly now?: () => Date;
  /** Stops the restore (the scratch folder is removed all the same). */
  readonly signal?: AbortSignal;
}

export interface DrillOutcome {
  readonly report: DrillReport;
  /** Every problem (the report keeps the first MAX_REPORTED_PROBLEMS). */
  readonly problems: readonly RestoreFailure[];
  /** Entries the snapshot left out when it was taken beyond those its summary names (and `problems` lists): counted in the report's problemCount. */
  readonly leftOutUnnamed?: number;
  /**
   * Files of a torn snapshot (they kept changing while its marker's barrier read them): restored and compared as read,
   * which proves nothing of their consistency; only the check can. Said beside the report, which the wire keeps as is.
   */
  readonly possiblyTorn?: ChangingWhileRead;
  /** Files the restore wrote without their set-uid / set-gid bits, as every restore does (owners are not kept): expected by the comparison. */
  readonly setIdDropped?: SetIdDropped;
}

export class DrillError extends Error {
  override name = "DrillError";
}

async function isEmptyOrMissing(path: string): Promise<boolean> {
  try {
    return (await readdir(path)).length === 0;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return true;
    throw error;
  }
}

/** Entries compared at once. */
const CHECK_CONCURRENCY = 8;

async function sha256File(path: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of createReadStream(path)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}


/** Why the restored entry differs from the recovery point's, or undefined when it matches. */
async function entryProblem(root: string, entry: RecoveryEntry): Promise<string | undefined> {
  const abs = join(root, entry.path);
  const st = await lstat(abs, { bigint: true }).catch((error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT" || error.code === "ENOTDIR") return undefined;
    throw error;
  });
  if (!st) return "missing from the restored tree";
  const kind = st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other";
  if (kind !== entry.kind) return `restored as a ${kind}, the recovery point has a ${entry.kind}`;
  // Restores set times through utimes, to the microsecond.
  if (floorMicros(st.mtimeNs) !== floorMicros(entry.mtimeNs)) return `mtime ${st.mtimeNs} ns, the recovery point has ${entry.mtimeNs} ns`;
  if (entry.kind === "symlink") {
    const target = await readlink(abs);
    return target === entry.link ? undefined : `links to ${JSON.stringify(target)}, the recovery point to ${JSON.stringify(entry.link)}`;
  }
  // A file's set-uid and set-gid bits are not restored (owners are not kept): the mode expected is the one restore gives.
  const mode = Number(st.mode & 0o7777n);
  const expected = restoredMode(entry);
  if (mode !== expected) return `mode ${mode.toString(8)}, the recovery point has ${entry.mode.toString(8)}${expected !== entry.mode ? ` (restored as ${expected.toString(8)}: set-uid and set-gid bits of files are not restored)` : ""}`;
  if (entry.kind === "file") {
    const { sha256, size } = await sha256File(abs);
    if (size !== entry.size) return `${size} bytes, the recovery point has ${entry.size}`;
    if (sha256 !== entry.sha256) return "content differs from the recovery point's sha256";
  }
  return undefined;
}

/**
 * Compares a restored tree with the recovery point: every entry, the hard-link
 * groups, and nothing more than it holds. Entries the restore reported are
 * named with the restore's reason.
 */
export async function checkRestoredTree(
  root: string,
  entries: readonly RecoveryEntry[],
  restoreFailures: readonly RestoreFailure[],
  onProgress?: (progress: Progress) => void,
): Promise<RestoreFailure[]> {
  const problems = new Map<string, string>(restoreFailures.map((f) => [f.path, `not restored: ${f.reason}`]));
  const unique = new Map<string, RecoveryEntry>();
  for (const entry of entries) if (!unique.has(entry.path)) unique.set(entry.path, entry);
  const toCheck = [...unique.values()].filter((entry) => !problems.has(entry.path));
  let checked = 0;
  const queue = toCheck.values();
  const worker = async () => {
    for (const entry of queue) {
      const problem = await entryProblem(root, entry).catch((error: unknown) => `cannot be read: ${(error as Error).message}`);
      if (problem) problems.set(entry.path, problem);
      checked += 1;
      if (checked % 100 === 0) onProgress?.({ phase: "check", entries: checked, totalEntries: toCheck.length });
    }
  };
  await Promise.all(Array.from({ length: CHECK_CONCURRENCY }, worker));
  onProgress?.({ phase: "check", entries: checked, totalEntries: toCheck.length });
  // Hard links: every member of a group (same content, mode and mtime) is one inode.
  const groups = new Map<string, RecoveryEntry[]>();
  for (const entry of toCheck) {
    if (entry.kind !== "file" || entry.linkGroup === undefined || problems.has(entry.path)) continue;
    const key = `${entry.linkGroup}\0${entry.sha256}\0${entry.mode}\0${entry.mtimeNs}`;
    groups.set(key, [...(groups.get(key) ?? []), entry]);
  }
  for (const members of groups.values()) {
    const [first, ...rest] = members;
    if (!first) continue;
    const ino = (await lstat(join(root, first.path), { bigint: true })).ino;
    for (const member of rest) {
      if ((await lstat(join(root, member.path), { bigint: true })).ino !== ino) problems.set(member.path, `not a hard link of ${first.path}, as it was on the source`);
    }
  }
  for (const path of await extraEntries(root, new Set(unique.keys()))) problems.set(path, "in the restored tree, not in the recovery point");
  return [...problems].map(([path, reason]) => ({ path, reason })).sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

/** Removes a restored tree, its read-only folders included (symlinks never followed). */
export async function removeTree(path: string): Promise<void> {
  const open = async (dir: string) => {
    const st = await lstat(dir).catch(() => undefined);
    if (!st?.isDirectory()) return;
    await chmod(dir, 0o700);
    for (const dirent of await readdir(dir, { withFileTypes: true })) if (dirent.isDirectory()) await open(join(dir, dirent.name));
  };
  await open(path);
  await rm(path, { recursive: true, force: true });
}

/** The first problems, as many as fit a report that travels inside one queue message. */
export function reportedProblems(problems: readonly RestoreFailure[]): RestoreFailure[] {
  const kept: RestoreFailure[] = [];
  let bytes = 0;
  for (const problem of problems.slice(0, MAX_REPORTED_PROBLEMS)) {
    const entry = { path: problem.path.slice(0, 4096), reason: problem.reason.slice(0, 1024) };
    bytes += Buffer.byteLength(JSON.stringify(entry));
    if (bytes > MAX_REPORTED_PROBLEM_BYTES) break;
    kept.push(entry);
  }
  return kept;
}

/** How far behind the source the target was when it reached the snapshot's marker (insert to apply), when the task result tells. */
async function lagAtPoint(store: TargetStore, set: string, taskId: string | undefined): Promise<number | null> {
  if (taskId === undefined) return null;
  const result = await readTaskResult(store, set, taskId).catch(() => undefined);
  if (!result?.insertedAt) return null;
  const lag = Date.parse(result.reachedAt) - Date.parse(result.insertedAt);
  return Number.isFinite(lag) ? Math.max(0, lag) : null;
}

/** Runs one drill of a set from the target store. The report is not sent anywhere: the caller journals it. */
export async function runDrill(store: TargetStore, set: string, options: DrillOptions = {}): Promise<DrillOutcome> {
  const now = options.now ?? (() => new Date());
  const started = now();
  const id = newTaskId(started);
  const { point, description, leftOutUnnamed = 0, possiblyTorn } = await resolveRecoveryPoint(store, set, {
    ...(options.snapshot !== undefined ? { snapshot: options.snapshot } : {}),
    ...(options.at !== undefined ? { at: options.at } : {}),
  });
  // A folder given with --to must be empty: the drill removes it afterwards.
  if (options.to !== undefined && !(await isEmptyOrMissing(resolve(options.to)))) {
    throw new DrillError(`${resolve(options.to)} is not empty; a drill restores into an empty or new folder (and removes it afterwards unless --keep)`);
  }
  const scratch = options.to !== undefined ? resolve(options.to) : await mkdtemp(join(tmpdir(), `tidemark-drill-${set}-`));
  const clock = () => now().getTime();
  try {
    const t0 = clock();
    const restored = await writeRecoveryPoint(point, scratch, {
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    const t1 = clock();
    const problems = await checkRestoredTree(restored.to, point.entries, restored.failures, options.onProgress);
    const t2 = clock();
    let check: DrillReport["check"];
    if (options.check !== undefined) {
      const result = await runHook(options.check, {
        cwd: restored.to,
        env: { TIDEMARK_SET: set, TIDEMARK_DRILL_ID: id, TIDEMARK_DRILL_DIR: restored.to },
        timeoutMs: options.checkTimeoutMs ?? 30 * 60_000,
      });
      check = {
        command: options.check,
        passed: hookSucceeded(result),
        code: result.code,
        timedOut: result.timedOut,
        output: result.output.slice(-MAX_CHECK_OUTPUT_CHARS),
        ms: result.ms,
      };
    }
    const t3 = clock();
    const finished = now();
    const report: DrillReport = {
      id,
      set,
      passed: problems.length === 0 && leftOutUnnamed === 0 && (check?.passed ?? true),
      startedAt: started.toISOString(),
      finishedAt: finished.toISOString(),
      recoveryPoint: description,
      rto: { restoreMs: t1 - t0, verifyMs: t2 - t1, checkMs: t3 - t2, totalMs: t3 - t0 },
      rpo: { ageMs: started.getTime() - Date.parse(description.takenAt), lagMs: await lagAtPoint(store, set, description.taskId) },
      entries: point.entries.length,
      bytes: restored.bytes,
      problems: reportedProblems(problems),
      // The summary names at most 100 left-out entries; the others are bad paths all the same.
      problemCount: problems.length + leftOutUnnamed,
      ...(check ? { check } : {}),
      scratch: { path: restored.to, kept: options.keep === true },
      host: hostname().slice(0, 256),
      // The stored report (status, scheduled drills) says a pass proves such files only as read.
      ...(possiblyTorn ? { tornCount: possiblyTorn.count } : {}),
    };
    return {
      report,
      problems,
      ...(leftOutUnnamed > 0 ? { leftOutUnnamed } : {}),
      ...(possiblyTorn ? { possiblyTorn } : {}),
      ...(restored.setIdDropped ? { setIdDropped: restored.setIdDropped } : {}),
    };
  } finally {
    if (options.keep !== true) await removeTree(scratch);
  }
}
