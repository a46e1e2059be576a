// The time a record counts at in the history (DESIGN 8: the source host is
// untrusted with respect to history). The agent's time says when the change
// happened on the source, so a restore of a moment during a short backlog is
// exact; but a record stamped long before it reached the target would rewrite
// moments the target already held (a delete backdated over an idle week turns
// every moment of the window into "deleted", and retention then drops the
// last checkpoint that held the file). So a record counts no earlier than
// MAX_RECORD_LAG_MS before the applier applies it, never before the entry
// before it, and never after the applier's clock.

/** How far before it is applied a record may count: longer backlogs count from this long before they arrive. */
export const MAX_RECORD_LAG_MS = 60 * 60_000;

/** The time (ms) a record stamped `at` by the agent counts at, after an entry at `previous`, applied at `now`. */
export function recordTime(previous: number, at: number | undefined, now: number): number {
  return Math.max(previous, now - MAX_RECORD_LAG_MS, Math.min(at ?? now, now));
}
