// `task --wait` gave up when the target's status had not moved for 10
// minutes. While the agent uploads a large file journaled ahead of the
// marker (a multi-GiB database over a slow or bandwidth-capped link), the
// target cannot move, as the message naming that file goes only after its
// upload: the wait failed with "the target has not moved" while the
// pipeline was working. The agent sending ahead of the marker counts as
// busy, like a marker's action holding the stream: it runs, the marker is
// not sent yet, and its sends are not failing (a failing or stuck upload
// records its error, and the stall clock runs again).

import { Journal } from "./journal.ts";
import { stateLockHeld } from "./state-lock.ts";

/**
 * A check for the wait's `busy`: true while an agent runs on `stateDir`, the set's journal (in the marker's
 * generation) has not sent the marker yet, and the set's last send did not fail. A journal that cannot be read says
 * false.
 */
export function sendingAhead(stateDir: string, set: string, marker: { readonly seq: number; readonly generation: string }): () => Promise<boolean> {
  return () => {
    if (!stateLockHeld(stateDir)) return Promise.resolve(false);
    try {
      const journal = Journal.open(stateDir);
      try {
        if (journal.sets.knownGeneration(set)?.id !== marker.generation) return Promise.resolve(false);
        const counters = journal.sets.counters(set);
        return Promise.resolve(counters.sentSeq < marker.seq && counters.lastSendError === null);
      } finally {
        journal.close();
      }
    } catch {
      return Promise.resolve(false);
    }
  };
}
