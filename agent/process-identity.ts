// Telling a process from a later one that reused its pid: a row or lock file
// written by an agent carries the pid and, where Linux tells it, this boot's
// id and the process's start time; a live pid with another start time is
// another process (a pid reused after the agent stopped, common in containers
// where pids are small and repeat).

import { readFileSync } from "node:fs";

/** The start of process pid as "<boot id>:<start time in clock ticks since boot>"; undefined where /proc does not tell (not Linux, no access). */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces: fields are counted after its closing one.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // starttime is field 22 of the whole line, the 20th after the name.
    const ticks = fields[19];
    const boot = readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
    return ticks !== undefined && /^\d+$/.test(ticks) && boot !== "" ? `${boot}:${ticks}` : undefined;
  } catch {
    return undefined;
  }
}

let own: string | undefined | null = null;

/** This process's start (read once). */
export function ownStart(): string | undefined {
  if (own === null) own = processStart(process.pid);
  return own;
}

/** False when pid now belongs to a process started at another time than `started` (when both are known). */
export function sameProcess(pid: number, started: string | undefined): boolean {
  if (started === undefined) return true;
  const now = processStart(pid);
  return now === undefined || now === started;
}
