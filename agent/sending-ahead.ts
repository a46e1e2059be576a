// `task --wait` gave up when the target's status had not moved for 10
// minutes. While the agent uploads a large file journaled ahead of the
// marker (a multi-GiB database over a slow or bandwidth-capped link), the
// target cannot move, as the message naming that file goes only after its
// upload: the wait failed with "the target has not moved" while the
// pipeline was working. The agent sending ahead of the marker counts as
// busy, like a marker's action holding the stream: it runs, the marker is
// not sent yet, and its sends are not failing (a failing or stuck upload
// records its error, and the stall clock runs again). So that a sender that
// never moves cannot keep the wait forever, the agent must answer on its
// control socket (a SIGSTOPped or hung one does not) and must have moved since
// the last check (records or bytes sent, a large upload's bytes stored), and
// the excuse lasts only as long as the backlog takes at a floor rate.

import { agentAnswers, AGENT_ANSWER_TIMEOUT_MS } from "./agent-presence.ts";
import { Journal } from "./journal.ts";
import { uploadsNow } from "./staged-uploads.ts";
import { stateLockHeld } from "./state-lock.ts";

/** The slowest sending the excuse allows for: the set's backlog at this rate, plus the stall limit. */
export const SENDING_FLOOR_BYTES_PER_SECOND = 64 * 1024;
const GRACE_MS = 10 * 60_000;

export interface SendingAheadOptions {
  readonly now?: () => number;
  /** How long the agent has to answer on its control socket. */
  readonly answerTimeoutMs?: number;
}

/** How far the set's sending got: what counts as moving between two checks. */
interface Sent {
  readonly sentSeq: number;
  readonly bytesSent: number;
  /** The large uploads going on (by key and start) and the bytes each stored. */
  readonly uploads: ReadonlyMap<string, number>;
}

function sentOf(journal: Journal, set: string): Sent {
  const counters = journal.sets.counters(set);
  const uploads = new Map(uploadsNow(journal.uploads, set).map((upload) => [`${upload.seq} ${upload.since}`, upload.done]));
  return { sentSeq: counters.sentSeq, bytesSent: counters.bytesSent, uploads };
}

function moved(before: Sent, after: Sent): boolean {
  if (after.sentSeq > before.sentSeq || after.bytesSent > before.bytesSent) return true;
  return [...after.uploads].some(([upload, done]) => done > (before.uploads.get(upload) ?? 0));
}

function readSent(stateDir: string, set: string): Sent | undefined {
  try {
    const journal = Journal.open(stateDir);
    try {
      return sentOf(journal, set);
    } finally {
      journal.close();
    }
  } catch {
    return undefined;
  }
}

/**
 * A check for the wait's `busy`: true while an agent runs on `stateDir` and answers on its control socket, the set's
 * journal (in the marker's generation) has not sent the marker yet, the set's last send did not fail, its sending
 * moved since the previous check (the first: since this call), and the time since the first check is within what
 * the backlog found then takes at SENDING_FLOOR_BYTES_PER_SECOND (plus 10 minutes). A journal that cannot be read
 * says false.
 */
export function sendingAhead(stateDir: string, set: string, marker: { readonly seq: number; readonly generation: string }, options: SendingAheadOptions = {}): () => Promise<boolean> {
  const now = options.now ?? Date.now;
  let until: number | undefined;
  let last = readSent(stateDir, set);
  return async () => {
    if (!stateLockHeld(stateDir)) return false;
    // A SIGSTOPped or hung agent holds the lock and records no error: it sends nothing.
    if (!(await agentAnswers(stateDir, options.answerTimeoutMs ?? AGENT_ANSWER_TIMEOUT_MS))) return false;
    try {
      const journal = Journal.open(stateDir);
      try {
        if (journal.sets.knownGeneration(set)?.id !== marker.generation) return false;
        const counters = journal.sets.counters(set);
        until ??= now() + GRACE_MS + (counters.backlogBytes / SENDING_FLOOR_BYTES_PER_SECOND) * 1000;
        const sent = sentOf(journal, set);
        const moving = last !== undefined && moved(last, sent);
        last = sent;
        return moving && counters.sentSeq < marker.seq && counters.lastSendError === null && now() < until;
      } finally {
        journal.close();
      }
    } catch {
      return false;
    }
  };
}
