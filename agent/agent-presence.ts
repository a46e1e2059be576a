// Whether an agent runs on a state folder, as a command outside it (status)
// sees it: a live process holds the state lock (an agent still starting
// holds it before its control socket listens) or the control socket answers.
// When none runs, since when, if known: a lock released records the time
// beside it (state-lock.ts); a killed agent's leaves none.

import { readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { answering, controlSocketPath } from "./control.ts";
import { releasedFileOf, stateLockHeld } from "./state-lock.ts";

/** `notAnswering`: the agent's process is there but its control socket takes no request (stopped or hung), and why. */
export type AgentPresence = { readonly running: true; readonly notAnswering?: string } | { readonly running: false; readonly stoppedAt?: string };

/** How long status waits for a running agent to answer a request on its control socket. */
export const AGENT_ANSWER_TIMEOUT_MS = 5_000;

/**
 * What the agent's control socket does with a request: answers it (any answer counts: a 404 too), takes the
 * connection and answers nothing in `timeoutMs` (a SIGSTOPped or hung process still has the kernel accept it), or
 * takes no connection (still starting, or gone).
 */
function probe(path: string, timeoutMs: number): Promise<"answers" | "silent" | "no connection"> {
  return new Promise((resolve) => {
    const req = request({ socketPath: path, path: "/alive", method: "GET", agent: false }, (res) => {
      clearTimeout(timer);
      res.resume();
      req.destroy();
      resolve("answers");
    });
    const timer = setTimeout(() => {
      req.destroy();
      resolve("silent");
    }, timeoutMs);
    req.on("error", () => {
      clearTimeout(timer);
      resolve("no connection");
    });
    req.end();
  });
}

/** Why an agent that accepts connections answers nothing, or undefined when it answers or takes no connection. */
async function notAnswering(path: string, timeoutMs: number): Promise<string | undefined> {
  if ((await probe(path, timeoutMs)) !== "silent") return undefined;
  return `the agent accepts connections on ${path} but answered nothing in ${timeoutMs / 1000} s: it is stopped (SIGSTOP) or hung, and replicates nothing meanwhile (its pid is in tidemark.lock in its state folder)`;
}

/** Whether the agent on the state folder `dir` answers a request on its control socket within `timeoutMs`. */
export async function agentAnswers(dir: string, timeoutMs: number = AGENT_ANSWER_TIMEOUT_MS): Promise<boolean> {
  return (await probe(controlSocketPath(dir), timeoutMs)) === "answers";
}

function stoppedAt(dir: string): string | undefined {
  try {
    const text = readFileSync(releasedFileOf(join(dir, "tidemark.lock")), "utf8").trim();
    return Number.isNaN(Date.parse(text)) ? undefined : text;
  } catch {
    return undefined;
  }
}

/** Whether an agent runs on the state folder `dir`, and if none does, since when (when known). */
export async function agentPresence(dir: string, answerTimeoutMs: number = AGENT_ANSWER_TIMEOUT_MS): Promise<AgentPresence> {
  // The lock again after the socket: an agent that started meanwhile runs too.
  if (stateLockHeld(dir) || (await answering(controlSocketPath(dir))) || stateLockHeld(dir)) {
    const reason = await notAnswering(controlSocketPath(dir), answerTimeoutMs);
    return reason !== undefined ? { running: true, notAnswering: reason } : { running: true };
  }
  const at = stoppedAt(dir);
  return at !== undefined ? { running: false, stoppedAt: at } : { running: false };
}
