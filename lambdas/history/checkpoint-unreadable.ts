// Entries a history checkpoint left out because their objects could not be
// read: named in the set's status (so `tidemark status` is not "in sync" over
// them) until a checkpoint reads everything again.

import type { SetStatus } from "../../contract/layout.ts";

/** Entries named in the status at most; `count` says how many there were. */
const NAMED = 20;

export function noteUnreadable(status: SetStatus, checkpoint: { at: string; segment: number; unreadable: readonly { path: string; reason: string }[] }): void {
  const { at, segment, unreadable } = checkpoint;
  if (unreadable.length === 0) {
    delete status.checkpointUnreadable;
    return;
  }
  status.checkpointUnreadable = { at, segment, count: unreadable.length, entries: unreadable.slice(0, NAMED) };
}
