// What a wait on the target does while this host's sends of the set are held
// (owner-hold.ts: the target's owner record names another key, so it would
// refuse the awaited record). An operator's wait (verify, mirror, prune,
// task --wait) ends at once with the reason and the way out (`tidemark
// adopt`). The agent's own waits (a recovery, the mirror on start) keep
// waiting with their clocks stopped and go on once the hold ends: failing
// them only journals the recovery again at the next status read.

import { z } from "zod";
import type { OwnerHold } from "./owner-hold.ts";

/** What a wait does while the set's sends are held: an operator's fails, the agent's own waits. */
export type WhileHeld = "fail" | "wait";

/** Who holds the set: the key the target's owner record names, and this host's. */
export const HeldBySchema = z.object({
  set: z.string(),
  ownerKeyId: z.string(),
  /** Since when the owner record names that key ("?" when it does not say). */
  ownerSince: z.string(),
  hostKeyId: z.string(),
});
export type HeldBy = z.infer<typeof HeldBySchema>;

/** Why the sends are held, in one clause (status, logs and errors say it alike). */
export function describeHold(held: HeldBy): string {
  return `the target's owner record names key ${held.ownerKeyId} (since ${held.ownerSince}), not this host's key ${held.hostKeyId}`;
}

/** An operator's operation waits for a record the target will not get while another key owns the set. */
export class HeldWaitError extends Error {
  override readonly name = "HeldWaitError";
  /** What was awaited, e.g. "the verification (seq 12)". */
  readonly what: string;
  readonly held: HeldBy;
  constructor(what: string, held: HeldBy) {
    super(
      `${what} of set "${held.set}" will not be reached while this host's sends of the set are held: ${describeHold(held)}, and the target would refuse them; the journal keeps what is unsent and sends it once the hold ends; run \`tidemark adopt ${held.set}\` on this host if it should replicate the set`,
    );
    this.what = what;
    this.held = held;
  }

  /** What `--json` prints (and the control socket carries): the reason, the owner and the way out. */
  toJSON(): HeldWaitReport {
    return { error: "sends-held", message: this.message, what: this.what, ...this.held, remedy: `tidemark adopt ${this.held.set}` };
  }
}

export const HeldWaitReportSchema = HeldBySchema.extend({ error: z.literal("sends-held"), message: z.string(), what: z.string(), remedy: z.string() });
export type HeldWaitReport = z.infer<typeof HeldWaitReportSchema>;

/** The error again from its report (what the agent answered over its control socket). */
export function heldWaitErrorOf(report: HeldWaitReport): HeldWaitError {
  return new HeldWaitError(report.what, { set: report.set, ownerKeyId: report.ownerKeyId, ownerSince: report.ownerSince, hostKeyId: report.hostKeyId });
}

/** What one poll of a wait does: go on as usual, fail now, or wait without counting the time toward its limits. */
export type HeldDecision = { kind: "go" } | { kind: "fail"; held: HeldBy } | { kind: "pause" };

/**
 * The decision of one poll. A record the target already reached (its action running) or passed is not affected
 * by the hold: its result comes whatever this host sends. Otherwise a held set fails an operator's wait and
 * pauses the agent's own.
 */
export function decideWhileHeld(held: HeldBy | undefined, reached: boolean, policy: WhileHeld): HeldDecision {
  if (held === undefined || reached) return { kind: "go" };
  return policy === "fail" ? { kind: "fail", held } : { kind: "pause" };
}

/** Whether the hold holds now (its owner record read again when due), and by whom. */
export async function heldNow(hold: OwnerHold): Promise<HeldBy | undefined> {
  await hold.holds();
  return hold.heldBy;
}
