// A drill's report travels through the set's stream, which only the agent
// holding the state folder may journal to. When `tidemark drill` cannot reach
// one (another command's own agent kept the state folder past the drill's
// wait, an agent that never answered), the report would be lost: a passed
// drill the target never hears of, or a failed one nobody sees. So the drill
// first keeps its report in the state folder (drill-reports/<id>.json,
// durable), and whoever journals it takes the file away: the drill's own
// request, any command's own agent of that set, or `tidemark run` at its
// start. `tidemark status` names the reports still kept.

import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
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

/** Keeps the report durably (temp file, fsync, rename, fsync the folder); returns its file. */
export function keepDrillReport(stateDir: string, report: DrillReport): string {
  const dir = keptReportsDir(stateDir);
  mkdirSync(dir, { recursive: true });
  const file = keptReportFile(stateDir, report.id);
  const temp = `${file}.${process.pid}.tmp`;
  const fd = openSync(temp, "w", 0o600);
  try {
    writeSync(fd, `${JSON.stringify(report)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, file);
  const dirFd = openSync(dir, "r");
  try {
    fsyncSync(dirFd);
  } finally {
    closeSync(dirFd);
  }
  return file;
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
  for (const name of names.filter((n) => n.endsWith(".json") || n.endsWith(`.json${CLAIMED}`)).sort()) {
    const file = join(keptReportsDir(stateDir), name);
    try {
      const report = DrillReportSchema.parse(JSON.parse(readFileSync(file, "utf8")));
      if (set === undefined || report.set === set) kept.push({ file, report });
    } catch {
      // Not a report: not ours to send or remove.
    }
  }
  return kept.sort((a, b) => a.report.finishedAt.localeCompare(b.report.finishedAt));
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
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
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
      log.warn("drill report kept in the state folder not journaled; kept for the next agent", { set: report.set, drill: report.id, file, error: String(error) });
    }
  }
}
