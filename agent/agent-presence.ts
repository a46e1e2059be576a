// Whether an agent runs on a state folder, as a command outside it (status)
// sees it: a live process holds the state lock (an agent still starting
// holds it before its control socket listens) or the control socket answers.
// When none runs, since when, if known: a lock released records the time
// beside it (state-lock.ts); a killed agent's leaves none.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { answering, controlSocketPath } from "./control.ts";
import { releasedFileOf, stateLockHeld } from "./state-lock.ts";

export type AgentPresence = { readonly running: true } | { readonly running: false; readonly stoppedAt?: string };

function stoppedAt(dir: string): string | undefined {
  try {
    const text = readFileSync(releasedFileOf(join(dir, "tidemark.lock")), "utf8").trim();
    return Number.isNaN(Date.parse(text)) ? undefined : text;
  } catch {
    return undefined;
  }
}

/** Whether an agent runs on the state folder `dir`, and if none does, since when (when known). */
export async function agentPresence(dir: string): Promise<AgentPresence> {
  // The lock again after the socket: an agent that started meanwhile runs too.
  if (stateLockHeld(dir) || (await answering(controlSocketPath(dir))) || stateLockHeld(dir)) return { running: true };
  const at = stoppedAt(dir);
  return at !== undefined ? { running: false, stoppedAt: at } : { running: false };
}
