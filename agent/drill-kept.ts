// A drill's report travels through the set's stream, which only the agent
// holding the state folder may journal to. When `tidemark drill` cannot reach
// one (another command's own agent kept the state folder past the drill's
// wait, an agent that never answered), the report would be lost: a passed
// drill the target never hears of, or a failed one nobody sees. So a drill
// whose report no agent took keeps it in the state folder
// (drill-reports/<id>.json, durable), and the set's next agent journals it and
// takes the file away: any command's own agent of that set, or `tidemark run`
// at its start, with each drill report it is given, and every minute. `tidemark status`
// names the reports still kept.
//
// The one exception to "only the lock's holder writes the state folder"
// (state-lock.ts): the drill writes its file without the lock, and only once
// its wait for an agent failed (a report an agent took leaves no file). It
// writes one new file under its own name (temp, rename), which no agent reads
// until it is complete; and as the state folder's owner (a root CLI makes the
// folder and writes the file with that user's effective ids and groups, so a
// link that user planted in its own folder gains it nothing), so the agent can
// take it away.

import { closeSync, constants, fchmodSync, fstatSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeSync, type Stats } from "node:fs";
import { dirname, join } from "node:path";
import { DrillReportSchema, type DrillReport } from "../contract/drills.ts";
import { silentLogger, type Logger } from "./log.ts";

/** The file a report is kept in until it is journaled. */
export function keptReportFile(stateDir: string, id: string): string {
  return join(keptReportsDir(stateDir), `${id}.json`);
}

/** The folder of the state folder holding drill reports not journaled yet. */
export function keptReportsDir(stateDir: string): string {
  return join(stateDir, "drill-reports");
}

/** A report kept until an agent journals it. */
export interface KeptReport {
  readonly file: string;
  readonly report: DrillReport;
}

/** A file whose name says it is being journaled by the agent that claimed it. */
const CLAIMED = ".sending";

/** Claimed files this process is journaling. */
const claimingHere = new Set<string>();

/** A kept report's file this agent may not take away (its folder not writable by it): no agent of the state folder can send it. */
export class KeptReportUnclaimableError extends Error {
  override name = "KeptReportUnclaimableError";
}

/** Whether this process, as root, writes for another owner: the state folder's (the service's user). */
function ownerToMatch(state: Stats): Stats | undefined {
  return process.getuid?.() === 0 && state.uid !== 0 ? state : undefined;
}

/**
 * drill-reports/, moded as the state folder and made by its owner (keepDrillReport runs this as that owner): a folder
 * left by someone else is not taken over (status names it with the remedy, keptReportsUnclaimable). Checked through a
 * descriptor opened without following links.
 */
function keptDirFor(stateDir: string, mode: number): string {
  const dir = keptReportsDir(stateDir);
  try {
    mkdirSync(dir, { mode });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  }
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    const found = fstatSync(fd);
    if (found.uid === process.geteuid?.() && (found.mode & 0o777) !== mode) fchmodSync(fd, mode);
  } finally {
    closeSync(fd);
  }
  return dir;
}

/**
 * Runs write with the effective user and group of owner when there is one (a root CLI writing for the service's
 * user): every path it opens is then opened with that user's rights, so a link that user planted in its own folder
 * reaches nothing more than it could write itself.
 */
function asOwner<T>(owner: Stats | undefined, write: () => T): T {
  if (!owner || !process.seteuid || !process.setegid || !process.setgroups || !process.getgroups) return write();
  const [uid, gid, groups] = [process.geteuid?.() ?? 0, process.getegid?.() ?? 0, process.getgroups()];
  // Groups first, then the group, then the user (only root may change them); back in the reverse order.
  try {
    process.setgroups([owner.gid]);
    process.setegid(owner.gid);
    process.seteuid(owner.uid);
    return write();
  } finally {
    process.seteuid(uid);
    process.setegid(gid);
    process.setgroups(groups);
  }
}

/** Keeps the report durably (temp file, fsync, rename, fsync the folder), owned as the state folder; returns its file. */
export function keepDrillReport(stateDir: string, report: DrillReport): string {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const state = statSync(stateDir);
  const owner = ownerToMatch(state);
  const file = keptReportFile(stateDir, report.id);
  const temp = `${file}.${process.pid}.tmp`;
  return asOwner(owner, () => {
    const dir = keptDirFor(stateDir, state.mode & 0o777);
    // A new file of this process's own, never one found in its place (a link, a leftover).
    rmSync(temp, { force: true });
    const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, `${JSON.stringify(report)}\n`);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, file);
    const dirFd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
    return file;
  });
}

/**
 * Why the agent of this state folder cannot take kept reports away (drill-reports/ owned by another user than the
 * state folder, as a root drill of an older version left it), or undefined when it can (or nothing is kept).
 */
export function keptReportsUnclaimable(stateDir: string): string | undefined {
  let dir: Stats;
  let state: Stats;
  try {
    dir = statSync(keptReportsDir(stateDir));
    state = statSync(stateDir);
  } catch {
    return undefined;
  }
  if (dir.uid === state.uid) return undefined;
  return `${keptReportsDir(stateDir)} is owned by uid ${dir.uid}, the state folder by uid ${state.uid}: its agent cannot take the reports away, so none is sent (\`chown -R ${state.uid}:${state.gid} ${keptReportsDir(stateDir)}\`)`;
}

/**
 * The reports kept in the state folder (`set`: that set's only), oldest first; a file claimed by an agent that then
 * stopped before it journaled it is kept too. Unreadable files are left out (a crash mid-write leaves only a temp).
 */
export function keptDrillReports(stateDir: string, set?: string): KeptReport[] {
  let names: string[];
  try {
    names = readdirSync(keptReportsDir(stateDir));
  } catch {
    return [];
  }
  const kept: KeptReport[] = [];
  for (const name of names.filter((n) => n.endsWith(".json") || n.endsWith(`.json${CLAIMED}`))) {
    const file = join(keptReportsDir(stateDir), name);
    try {
      const report = DrillReportSchema.parse(JSON.parse(readFileSync(file, "utf8")));
      if (set === undefined || report.set === set) kept.push({ file, report });
    } catch {
      // Not a report: not ours to send or remove.
    }
  }
  // Oldest first; reports that finished in the same instant by their ids (whose names start with the time).
  return kept.sort((a, b) => a.report.finishedAt.localeCompare(b.report.finishedAt) || a.report.id.localeCompare(b.report.id));
}

/**
 * Journals a kept report once, by whoever claims its file first (renamed aside: one process holds the state folder,
 * so a rename cannot be won twice); the file goes once the report is journaled. Returns the seq, or undefined when
 * the file was claimed already (the report is journaled, or being journaled, by another path).
 */
export async function journalKept(file: string, journal: () => Promise<number>): Promise<number | undefined> {
  const claimed = file.endsWith(CLAIMED) ? file : `${file}${CLAIMED}`;
  // Being journaled by this process now. One claimed by a process that stopped before it was done is not here: ours.
  if (claimingHere.has(claimed)) return undefined;
  if (claimed !== file) {
    try {
      renameSync(file, claimed);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return undefined;
      if (code === "EACCES" || code === "EPERM") throw new KeptReportUnclaimableError(`${file} cannot be taken away by this agent (${code}): ${keptReportsUnclaimable(dirname(dirname(file))) ?? "its folder is not writable by this agent's user"}`);
      throw error;
    }
  }
  claimingHere.add(claimed);
  let seq: number;
  try {
    seq = await journal();
  } catch (error) {
    // Not journaled: kept for the next try.
    if (claimed !== file) renameSync(claimed, file);
    throw error;
  } finally {
    claimingHere.delete(claimed);
  }
  rmSync(claimed, { force: true });
  return seq;
}

/** Journals the reports kept for these sets (an agent's own), each once; a report that fails to journal stays kept, logged. */
export async function sendKeptDrillReports(stateDir: string, sets: readonly string[], journalDrill: (set: string, report: DrillReport) => Promise<number>, log: Logger = silentLogger): Promise<void> {
  for (const { file, report } of keptDrillReports(stateDir).filter((k) => sets.includes(k.report.set))) {
    try {
      const seq = await journalKept(file, () => journalDrill(report.set, report));
      if (seq !== undefined) log.info("drill report kept in the state folder journaled", { set: report.set, drill: report.id, seq });
    } catch (error) {
      if (error instanceof KeptReportUnclaimableError) log.error("drill report kept in the state folder cannot be sent: `tidemark status` names it", { set: report.set, drill: report.id, file, error: error.message });
      else log.warn("drill report kept in the state folder not journaled; kept for the next agent", { set: report.set, drill: report.id, file, error: String(error) });
    }
  }
}

/** How often `tidemark run` looks for kept reports while it runs (one its journal refused when a drill gave it). */
export const KEPT_SWEEP_MS = 60_000;

/** Journals the kept reports of these sets now and every `everyMs` (a sweep at a time; a readdir when none) until stopped. */
export function sweepKeptDrillReports(stateDir: string, sets: readonly string[], journalDrill: (set: string, report: DrillReport) => Promise<number>, log: Logger, everyMs = KEPT_SWEEP_MS): { stop(): Promise<void> } {
  let busy: Promise<void> | undefined;
  const sweep = () => {
    busy ??= sendKeptDrillReports(stateDir, sets, journalDrill, log).finally(() => {
      busy = undefined;
    });
  };
  sweep();
  const timer = setInterval(sweep, everyMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await busy;
    },
  };
}
