// With no `tidemark run` service, a command starts its own agent for the
// duration (command-agent.ts), and that agent serves no other command. A
// second command meanwhile (cron's `task db1` and `task db2` in one minute,
// `drill` sending its report while `verify` runs) failed at once, and a
// passed drill's report was lost. Such a holder ends by itself, so the second
// command waits for the state lock to be released, bounded, and then starts
// its own agent. Only a holder it can judge is waited for: this host's
// process with a known start (a reused pid cannot be told otherwise).

import { setTimeout as sleep } from "node:timers/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { RUN_COMMAND } from "./command-agent.ts";
import { STARTING_AGENT_WAIT_MS } from "./starting-agent.ts";
import { AGENT_POLL_MS, heldOnThisHost, lockedBy, lockOwner, StateLockedError, type LockOwner } from "./state-lock.ts";

/**
 * How long a command waits in all for other commands' own agents to end: a `verify` or `mirror` of a large set runs
 * for minutes, and a cron'd `task` with `--wait` as long as its marker takes; five minutes covers the commands that
 * meet by chance, and past it the user is told to keep `tidemark run` running (which serves every command at once).
 */
export const COMMAND_AGENT_WAIT_MS = 300_000;

/** Another command's own agent kept the state folder past the command's deadline. */
export class CommandAgentWaitTimeoutError extends Error {
  override name = "CommandAgentWaitTimeoutError";
}

/**
 * The deadlines of one command, shared by all its waits (task's before `--quiesce` and operate's): `until` bounds
 * everything; `starting` bounds a starting `tidemark run` agent (STARTING_AGENT_WAIT_MS), set again after another
 * command's agent ended, never past `until`.
 */
export interface CommandWaits {
  readonly until: number;
  starting: number;
}

export function commandWaits(bound: number = COMMAND_AGENT_WAIT_MS, now: number = Date.now()): CommandWaits {
  return { until: now + bound, starting: Math.min(now + bound, now + STARTING_AGENT_WAIT_MS) };
}

/**
 * The deadlines left once a command has stopped something for its work (task's --quiesce stops a database): bounded
 * by `bound` from now, so another command's agent taking the state folder after the command's first wait (two tasks
 * started together both found it free) keeps the service stopped a minute at most, not the five of COMMAND_AGENT_WAIT_MS.
 */
export function shortenedWaits(waits: CommandWaits, bound: number = STARTING_AGENT_WAIT_MS, now: number = Date.now()): CommandWaits {
  const until = Math.min(waits.until, now + bound);
  return { until, starting: Math.min(waits.starting, until) };
}

/** Whether the lock's holder is another command's own agent that this command waits for (this host, known start). */
export function commandAgentHolds(owner: LockOwner | undefined): owner is LockOwner & { command: string } {
  return heldOnThisHost(owner) && owner.command !== undefined && owner.command !== RUN_COMMAND;
}

/** Why the command cannot take the state folder: for another command's agent, that it ends by itself. */
export function refusedBy(stateDir: string, owner: LockOwner): StateLockedError {
  if (owner.command === undefined || owner.command === RUN_COMMAND) return lockedBy(stateDir, owner);
  return new StateLockedError(
    `state folder ${stateDir} is in use by \`${owner.command}\` (pid ${owner.pid}${owner.host !== undefined && owner.host !== hostname() ? ` on ${owner.host}` : ""}), whose own agent ends by itself once its work is done: run this again then, or keep \`${RUN_COMMAND}\` running to serve every command (the lock is ${join(stateDir, "tidemark.lock")}; remove it only if that process is not running)`,
  );
}

/**
 * Waits while another command's own agent holds the state lock, until it is released (true: the caller may start
 * its own agent or ask the one now there). False at once when no such holder is there. Throws
 * CommandAgentWaitTimeoutError, naming the holder, once `waits.until` passes.
 */
export async function commandAgentGone(stateDir: string, waits: CommandWaits, onWait?: (owner: LockOwner & { command: string }, seconds: number) => void): Promise<boolean> {
  let owner = lockOwner(stateDir);
  if (!commandAgentHolds(owner)) return false;
  onWait?.(owner, Math.max(0, Math.ceil((waits.until - Date.now()) / 1000)));
  for (;;) {
    if (Date.now() >= waits.until) {
      throw new CommandAgentWaitTimeoutError(
        `state folder ${stateDir} is still in use by \`${owner.command}\` (pid ${owner.pid}), whose own agent did not end in time; it ends by itself once its work is done: run this again then, or keep \`${RUN_COMMAND}\` running to serve every command`,
      );
    }
    await sleep(AGENT_POLL_MS);
    const now = lockOwner(stateDir);
    if (!commandAgentHolds(now)) {
      waits.starting = Math.min(waits.until, Date.now() + STARTING_AGENT_WAIT_MS);
      return true;
    }
    owner = now;
  }
}
