// The time a record counts at in the history (DESIGN 8: the source host is
// untrusted with respect to history). The agent's time says when the change
// happened on the source, so a restore of a moment during a short backlog is
// exact; but a record stamped long before it was sent would rewrite moments
// the target already held (a delete backdated over an idle week turns every
// moment of the window into "deleted", and retention then drops the last
// checkpoint that held the file). So a record counts no earlier than
// MAX_RECORD_LAG_MS before its message was sent (the queue's SentTimestamp,
// which the host cannot set; the applier's clock where none is known), never
// before the entry before it, and never after the applier's clock. A message
// that waited in the queue (an applier outage, its retries) keeps its records'
// times: the bound follows the sending, not the applying. A redrive from the
// dead-letter queue is a new send (SQS gives it a new SentTimestamp). A host
// made the set's owner by `tidemark adopt` counts its records no earlier than
// the adoption (the owner record's `since`): what it journaled while another
// host owned the set must not rewrite the moments the target held that
// host's tree, even when sent within the hour.

/** How far before its message was sent a record may count: a host can place a change at most this long before it sent it. */
export const MAX_RECORD_LAG_MS = 60 * 60_000;

/**
 * The time (ms) a record stamped `at` by the agent counts at, after an entry at `previous`, applied at `now`, its
 * message sent at `sent` (the queue's SentTimestamp; `now` when unknown) and signed by a key adopted as the set's
 * owner at `ownerSince` (undefined: the set's first owner, or unknown).
 */
export function recordTime(previous: number, at: number | undefined, now: number, sent?: number, ownerSince?: number): number {
  const earliest = Math.min(now, Math.max((sent ?? now) - MAX_RECORD_LAG_MS, ownerSince ?? Number.NEGATIVE_INFINITY));
  return Math.max(previous, earliest, Math.min(at ?? now, now));
}
