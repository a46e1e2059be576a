// An agent starting (`systemctl restart tidemark`, then at once `tidemark
// task`) holds the state folder's lock before its control socket listens. A
// command that found no socket then started an agent of its own, which the
// lock refused: "state folder ... is in use by tidemark run; stop it first",
// while the running agent was exactly what the command wanted to use. The
// command waits for the starting agent's socket instead, for a bounded time,
// but only for a lock it can judge: this host's `tidemark run` with a known
// start. A lock of another host (whose socket can never answer here) or of a
// process whose start is unknown (a reused pid cannot be told) is refused at
// once, as before; another command's own agent is waited for to end
// (command-agent-wait.ts).

import { setTimeout as sleep } from "node:timers/promises";
import { hostname } from "node:os";
import { join } from "node:path";
import { RUN_COMMAND } from "./command-agent.ts";
import { answering, controlSocketPath } from "./control.ts";
import { AGENT_POLL_MS, heldOnThisHost, lockOwner, type LockOwner } from "./state-lock.ts";

/** The lock's holder did not open its control socket in time: neither it nor this command can do the work. */
export class AgentStartTimeoutError extends Error {
  override name = "AgentStartTimeoutError";
}

/** How long a command waits for a starting agent's control socket. */
export const STARTING_AGENT_WAIT_MS = 60_000;

/** Whether a command waits for the lock's holder to answer: this host's `tidemark run`, with a known start. */
export function startingAgent(owner: LockOwner | undefined): owner is LockOwner {
  return heldOnThisHost(owner) && owner.command === RUN_COMMAND;
}

export interface StartingAgentWait {
  /** When to give up (ms since the epoch); STARTING_AGENT_WAIT_MS from now unless given. */
  readonly deadline?: number;
  /** Called once when the wait begins (the lock is held, the socket does not answer yet). */
  readonly onWait?: (owner: LockOwner) => void;
}

/**
 * Whether an agent starting on `stateDir` (its `tidemark run` holds the state lock) now answers on its control
 * socket: true once it does; false when no process holds the lock (none runs: the caller may start its own) or
 * one the command does not wait for does (see startingAgent: the caller's own start then refuses, naming it).
 * Throws AgentStartTimeoutError when the lock stays held without a socket until the deadline.
 */
export async function startingAgentAnswers(stateDir: string, options: StartingAgentWait = {}): Promise<boolean> {
  const socket = controlSocketPath(stateDir);
  const deadline = options.deadline ?? Date.now() + STARTING_AGENT_WAIT_MS;
  let said = false;
  for (;;) {
    if (await answering(socket)) return true;
    const owner = lockOwner(stateDir);
    if (owner === undefined) return answering(socket);
    if (!startingAgent(owner)) return false;
    if (!said) {
      said = true;
      options.onWait?.(owner);
    }
    if (Date.now() >= deadline) {
      throw new AgentStartTimeoutError(
        `the agent starting on ${stateDir} (${RUN_COMMAND}, pid ${owner.pid} on ${owner.host ?? hostname()}) holds its state folder but its control socket ${socket} did not answer in time: it is still starting, stopping, stopped (SIGSTOP) or hung; should it stay so, stop it (the lock is ${join(stateDir, "tidemark.lock")}; remove it only if that process is not running)`,
      );
    }
    await sleep(AGENT_POLL_MS);
  }
}
