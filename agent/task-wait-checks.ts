// What `tidemark task --wait` checks besides the target while it waits for
// its marker: the set's sends held by another key, no agent left to send the
// marker, and the agent sending ahead of it (busy, not stalled). In one place
// so a test can hold the command to all three.

import type { TargetStore } from "../lambdas/target/index.ts";
import { sendingAhead } from "./sending-ahead.ts";
import { heldByOwnerRecord, unsentWithoutAgent } from "./task-results.ts";
import type { TargetWaitOptions } from "./target-wait.ts";

export function taskWaitChecks(
  store: TargetStore,
  stateDir: string,
  set: string,
  marker: { readonly seq: number; readonly generation: string },
  hostKeyId: string | undefined,
): Pick<TargetWaitOptions, "held" | "unsent" | "busy"> {
  return {
    // Another key owning the set holds this host's sends: the marker would never reach the target.
    ...(hostKeyId !== undefined ? { held: { by: heldByOwnerRecord(store, set, hostKeyId), policy: "fail" } } : {}),
    // An agent that stops during the wait leaves an unsent marker unsent: said at once, not after the stall limit.
    unsent: unsentWithoutAgent(stateDir, set, marker),
    // A large upload ahead of the marker keeps the target still without anything stalled.
    busy: sendingAhead(stateDir, set, marker),
  };
}
