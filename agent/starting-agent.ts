// An agent starting (`systemctl restart tidemark`, then at once `tidemark
// task`) holds the state folder's lock before its control socket listens. A
// command that found no socket then started an agent of its own, which the
// lock refused: "state folder ... is in use by tidemark run; stop it first",
// while the running agent was exactly what the command wanted to use. The
// command waits for the starting agent's socket instead, for a bounded time.

import { answering, controlSocketPath } from "./control.ts";
import { stateLockHeld } from "./state-lock.ts";

/** The lock's holder did not open its control socket in time: neither it nor this command can do the work. */
export class AgentNotAnsweringError extends Error {
  override name = "AgentNotAnsweringError";
}

/** How long a command waits for a starting agent's control socket. */
export const STARTING_AGENT_WAIT_MS = 60_000;
const POLL_MS = 100;

/**
 * Whether an agent starting on `stateDir` (it holds the state lock) now answers on its control socket: true once it
 * does, false when no process holds the lock (none runs: the caller may start its own). Throws
 * AgentNotAnsweringError when the lock stays held without a socket for `timeoutMs`.
 */
export async function startingAgentAnswers(stateDir: string, timeoutMs: number = STARTING_AGENT_WAIT_MS): Promise<boolean> {
  const socket = controlSocketPath(stateDir);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await answering(socket)) return true;
    if (!stateLockHeld(stateDir)) return answering(socket);
    if (Date.now() >= deadline) {
      throw new AgentNotAnsweringError(
        `an agent holds the state folder ${stateDir} (its pid is in tidemark.lock there) but its control socket ${socket} did not answer within ${timeoutMs / 1000} s: it is still starting, stopped or hung; try again once \`tidemark status\` shows it running`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
