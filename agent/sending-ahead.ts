// `task --wait` gave up when the target's status had not moved for 10
// minutes. While the agent uploads a large file journaled ahead of the
// marker (a multi-GiB database over a slow or bandwidth-capped link), the
// target cannot move, as the message naming that file goes only after its
// upload: the wait failed with "the target has not moved" while the
// pipeline was working. The agent sending ahead of the marker counts as
// busy, like a marker's action holding the stream: it runs, the marker is
// not sent yet, and its sends are not failing (a failing or stuck upload
// records its error, and the stall clock runs again). So that a sender that
// never moves cannot keep the wait forever, the excuse lasts only as long as
// the backlog takes at a floor rate.

import { Journal } from "./journal.ts";
import { stateLockHeld } from "./state-lock.ts";

/** The slowest sending the excuse allows for: the set's backlog at this rate, plus the stall limit. */
export const SENDING_FLOOR_BYTES_PER_SECOND = 64 * 1024;
const GRACE_MS = 10 * 60_000;

export interface SendingAheadOptions {
  readonly now?: () => number;
}

/**
 * A check for the wait's `busy`: true while an agent runs on `stateDir`, the set's journal (in the marker's
 * generation) has not sent the marker yet, the set's last send did not fail, and the time since the first check is
 * within what the backlog found then takes at SENDING_FLOOR_BYTES_PER_SECOND (plus 10 minutes). A journal that
 * cannot be read says false.
 */
export function sendingAhead(stateDir: string, set: string, marker: { readonly seq: number; readonly generation: string }, options: SendingAheadOptions = {}): () => Promise<boolean> {
  const now = options.now ?? Date.now;
  let until: number | undefined;
  return () => {
    if (!stateLockHeld(stateDir)) return Promise.resolve(false);
    try {
      const journal = Journal.open(stateDir);
      try {
        if (journal.sets.knownGeneration(set)?.id !== marker.generation) return Promise.resolve(false);
        const counters = journal.sets.counters(set);
        until ??= now() + GRACE_MS + (counters.backlogBytes / SENDING_FLOOR_BYTES_PER_SECOND) * 1000;
        return Promise.resolve(counters.sentSeq < marker.seq && counters.lastSendError === null && now() < until);
      } finally {
        journal.close();
      }
    } catch {
      return Promise.resolve(false);
    }
  };
}
