// The test process standing for a running agent on a state folder: it holds
// the folder's state lock, as `tidemark run` does from its start, so
// `tidemark status` (agent-presence.ts) sees an agent running.

import { acquireStateLock, type StateLock } from "../../agent/state-lock.ts";

export function standInAgent(stateDir: string): StateLock {
  return acquireStateLock(stateDir, "tidemark run (test stand-in)");
}
