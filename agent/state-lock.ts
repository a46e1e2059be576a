// One process per state folder: a lock file holding the owner's pid, created
// before anything else in the folder is written. A lock whose process is gone
// (stopped, crashed, SIGKILLed) is taken over; a live one refuses.
// One exception: `tidemark drill` writes its report's file into drill-reports/
// without the lock when no agent took the report (drill-kept.ts says why).

import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, unlinkSync, writeFileSync, writeSync } from "node:fs";
import { hostname } from "node:os";
import { basename, join } from "node:path";
import { ownStart, sameProcess } from "./process-identity.ts";

export class StateLockedError extends Error {
  override name = "StateLockedError";
}

export interface StateLock {
  readonly file: string;
  /** Removes the lock file if it is still ours; safe to call twice. */
  release(): void;
}

export interface LockOwner {
  readonly pid: number;
  readonly host?: string;
  readonly command?: string;
  /** When the process started (process-identity.ts): a live pid started at another time is another process. */
  readonly started?: string;
}

function readOwner(file: string): LockOwner | undefined {
  try {
    const parsed: unknown = JSON.parse(readFileSync(file, "utf8"));
    if (typeof parsed !== "object" || parsed === null || !("pid" in parsed) || typeof parsed.pid !== "number") return undefined;
    const host = "host" in parsed && typeof parsed.host === "string" ? parsed.host : undefined;
    const command = "command" in parsed && typeof parsed.command === "string" ? parsed.command : undefined;
    const started = "started" in parsed && typeof parsed.started === "string" ? parsed.started : undefined;
    return { pid: parsed.pid, ...(host !== undefined ? { host } : {}), ...(command !== undefined ? { command } : {}), ...(started !== undefined ? { started } : {}) };
  } catch {
    // Unreadable or half-written by a process killed while writing it: nobody holds it.
    return undefined;
  }
}

/** Lock files this process holds: a second agent in the same process is refused too. */
const heldHere = new Set<string>();

/**
 * Whether the process `pid` on `host` still runs; one on another host (a state folder on shared storage) is taken to.
 * With `started` (process-identity.ts), a pid now held by a process started at another time does not count.
 */
export function processRuns(pid: number, host: string | undefined, started?: string): boolean {
  if (host !== undefined && host !== hostname()) return true;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: the process exists under another user.
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  return sameProcess(pid, started);
}

/** Whether the owner still runs; a lock from another host counts as held. */
function held(owner: LockOwner | undefined): owner is LockOwner {
  if (owner === undefined) return false;
  // Our own pid in a lock we did not take: a previous life of this pid (a container's agent is often pid 1 every time).
  return (owner.pid !== process.pid || (owner.host !== undefined && owner.host !== hostname())) && processRuns(owner.pid, owner.host, owner.started);
}

/**
 * Whether a live process (this one included) holds the state folder's lock: an agent holds it from the start of
 * `tidemark run`, before its control socket listens. A lock left by a process that is gone does not count.
 */
export function stateLockHeld(dir: string, name = "tidemark.lock"): boolean {
  const file = join(dir, name);
  return heldHere.has(file) || held(readOwner(file));
}

/**
 * Whether the lock's holder is an agent of this host whose start is known: a command waits only for such a holder (its
 * start tells it from a reused pid; another host's lock is never waited for).
 */
export function heldOnThisHost(owner: LockOwner | undefined): owner is LockOwner & { started: NonNullable<LockOwner["started"]> } {
  return owner !== undefined && owner.host === hostname() && owner.started !== undefined;
}

/** How often a command looks again at an agent it waits for (a starting `tidemark run`, another command's agent). */
export const AGENT_POLL_MS = 100;

/** Who holds the state folder's lock, as its file says, when a live process other than this one does. */
export function lockOwner(dir: string, name = "tidemark.lock"): LockOwner | undefined {
  const owner = readOwner(join(dir, name));
  return held(owner) ? owner : undefined;
}

/** Why the state folder cannot be taken: `owner` holds it. */
export function lockedBy(dir: string, owner: LockOwner, name = "tidemark.lock"): StateLockedError {
  const who = `${owner.command ?? "tidemark"} (pid ${owner.pid}${owner.host !== undefined && owner.host !== hostname() ? ` on ${owner.host}` : ""})`;
  return new StateLockedError(
    `state folder ${dir} is in use by ${who}; stop it first, or give this one another state folder (the lock is ${join(dir, name)}; remove it only if that process is not running)`,
  );
}

function refuse(dir: string, file: string, owner: LockOwner): never {
  throw lockedBy(dir, owner, basename(file));
}

/**
 * Takes the state folder for this process, creating the folder if needed.
 * Throws StateLockedError when a live process holds it.
 */
export function acquireStateLock(dir: string, command: string, name = "tidemark.lock"): StateLock {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, name);
  if (heldHere.has(file)) refuse(dir, file, { pid: process.pid, command: "this process" });
  const started = ownStart();
  const mine = `${JSON.stringify({ pid: process.pid, host: hostname(), command, since: new Date().toISOString(), ...(started !== undefined ? { started } : {}) })}\n`;
  for (let attempt = 0; attempt < 5; attempt += 1) {
    let fd: number;
    try {
      fd = openSync(file, "wx", 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      const owner = readOwner(file);
      if (held(owner)) refuse(dir, file, owner);
      // Stale: move it aside under a name of our own, so of two processes taking it over only one moves it.
      const aside = `${file}.stale-${process.pid}`;
      try {
        renameSync(file, aside);
      } catch (moveError) {
        if ((moveError as NodeJS.ErrnoException).code === "ENOENT") continue;
        throw moveError;
      }
      const moved = readOwner(aside);
      if (held(moved)) {
        // Between our read and the move another process took the stale lock over: it is theirs.
        renameSync(aside, file);
        refuse(dir, file, moved);
      }
      unlinkSync(aside);
      continue;
    }
    try {
      writeSync(fd, mine);
    } finally {
      closeSync(fd);
    }
    heldHere.add(file);
    const lock = lockOf(file);
    // An earlier stop's time no longer says since when no agent runs: this one does (killed, it records none).
    try {
      rmSync(releasedFileOf(file), { force: true });
    } catch {
      // Best effort, as its writing is: status may then name that earlier stop's time.
    }
    return lock;
  }
  throw new StateLockedError(`state folder ${dir}: could not take ${file} (other processes keep taking it); try again`);
}

/** The file beside a lock that says when its last holder released it (status names since when no agent runs). */
export const releasedFileOf = (file: string): string => `${file}.released`;

function recordReleased(file: string): void {
  try {
    writeFileSync(releasedFileOf(file), `${new Date().toISOString()}\n`);
  } catch {
    // Best effort: status then says no agent runs without since when.
  }
}

function lockOf(file: string): StateLock {
  let released = false;
  const release = () => {
    if (released) return;
    released = true;
    heldHere.delete(file);
    process.off("exit", release);
    if (readOwner(file)?.pid === process.pid) {
      // Before the lock goes: a successor taking it clears the time, and a write after that would name this stop.
      recordReleased(file);
      try {
        unlinkSync(file);
      } catch {
        // Already gone: nothing to release.
      }
    }
  };
  // A process that exits without stopping (an uncaught error) leaves no lock behind; a SIGKILL's is taken over.
  process.on("exit", release);
  return { file, release };
}
