// The journal held by another process longer than a reader waits for it
// (SQLite's busy timeout): an operator's `sqlite3 journal.db` left in a
// transaction, a backup tool, a second agent. `tidemark status` names the file
// and the processes that have it open (those this user may look at), instead
// of a bare "database is locked" that names nothing.

import { readdirSync, readFileSync, readlinkSync, realpathSync } from "node:fs";
import { hostname } from "node:os";
import { dirname } from "node:path";
import { sqliteCode } from "./journal-faults.ts";
import { lockOwner } from "./state-lock.ts";

/** SQLite's primary result codes for a lock another connection holds. */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

/** Whether a journal operation failed because another connection holds its lock (after the busy timeout). */
export function isJournalBusy(error: unknown): boolean {
  const primary = sqliteCode(error);
  return primary === SQLITE_BUSY || primary === SQLITE_LOCKED;
}

/** The processes (pid and command line) that have the file at path open, among those this user may look at (Linux's /proc). */
export function processesWithOpen(path: string, procDir = "/proc"): { pid: number; command: string }[] {
  const found: { pid: number; command: string }[] = [];
  // /proc's links name the file by its real path: a state folder reached through a symlink matched no holder.
  let real = path;
  try {
    real = realpathSync.native(path);
  } catch {
    // gone meanwhile: the path as given
  }
  let pids: string[];
  try {
    pids = readdirSync(procDir).filter((name) => /^\d+$/.test(name));
  } catch {
    return found;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`${procDir}/${pid}/fd`);
    } catch {
      // Gone, or another user's: not ours to see.
      continue;
    }
    const opens = fds.some((fd) => {
      try {
        return readlinkSync(`${procDir}/${pid}/fd/${fd}`) === real;
      } catch {
        return false;
      }
    });
    if (!opens) continue;
    let command = "";
    try {
      command = readFileSync(`${procDir}/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
    } catch {
      // gone meanwhile
    }
    found.push({ pid: Number(pid), command: command.length > 80 ? `${command.slice(0, 77)}...` : command });
  }
  return found;
}

/** What status says of a journal it could not read for another process's lock, naming who has it open (but this process). */
export function journalBusyProblem(path: string, holders = processesWithOpen(path).filter((p) => p.pid !== process.pid)): string {
  // The agent has its journal open all along: it is labelled, so an operator does not kill it for the lock's holder.
  const owner = lockOwner(dirname(path));
  const agentPid = owner !== undefined && (owner.host === undefined || owner.host === hostname()) ? owner.pid : undefined;
  const who =
    holders.length > 0
      ? `open in ${holders.map((p) => `pid ${p.pid}${p.pid === agentPid ? " (the agent)" : ""}${p.command ? ` (${p.command})` : ""}`).join(", ")}`
      : "no process this user may look at has it open (run status as the agent's user or root to see which)";
  return (
    `the journal ${path} is locked by another process: ${who}; ` +
    "nothing of it could be read, and while the lock is held the agent cannot journal either. " +
    "An `sqlite3` session left in a transaction is the usual holder: end it (COMMIT or quit)"
  );
}
