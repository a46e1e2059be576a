// What one set's applier reads (contract/applier-accepts.ts), learnt from the
// status reads the agent makes anyway (its status poll, the continuity check):
// no request per message. Until the applier has said it reads whole packs,
// the set's packs go per file, the form every applier reads; an applier that
// stops saying so (a stack rolled back) gets per-file packs from the next
// message on, and the set is recovered while its status names such a refusal
// and the target lacks part of what the journal sent (set-recovery.ts).

import { acceptsWholePacks, WHOLE_PACKS, type ApplierAnnouncement } from "../contract/applier-accepts.ts";
import type { SetStatus } from "../contract/layout.ts";
import type { Logger } from "./log.ts";

/** Reads the stack-wide announcement (state/applier.json); undefined when there is none. */
export type AnnouncementReader = () => Promise<ApplierAnnouncement | undefined>;

/** How long a read that found no announcement (or failed) counts as none before it is read again. */
export const ANNOUNCEMENT_RETRY_MS = 10 * 60_000;

export interface CachedAnnouncementOptions {
  /** @default ANNOUNCEMENT_RETRY_MS */
  readonly retryMs?: number;
  /** @default Date.now */
  readonly now?: () => number;
}

/**
 * The announcement, read when a set's status does not say what its applier reads: once per process when found. A
 * failed read (a host role that may not read it, the target unreachable) or none yet counts as none, and is read
 * again after retryMs, not at every status read: the set learns from its status meanwhile.
 */
export function cachedAnnouncement(read: AnnouncementReader, options: CachedAnnouncementOptions = {}): AnnouncementReader {
  const retryMs = options.retryMs ?? ANNOUNCEMENT_RETRY_MS;
  const now = options.now ?? Date.now;
  let cached: { readonly read: Promise<ApplierAnnouncement | undefined>; found: boolean; readonly at: number } | undefined;
  return () => {
    if (!cached || (!cached.found && now() - cached.at >= retryMs)) {
      const entry = { read: read().catch(() => undefined), found: false, at: now() };
      void entry.read.then((announcement) => (entry.found = announcement !== undefined));
      cached = entry;
    }
    return cached.read;
  };
}

export class ApplierAccepts {
  readonly #set: string;
  readonly #announcement: AnnouncementReader | undefined;
  readonly #log: Logger;
  #wholePacks = false;

  constructor(set: string, log: Logger, announcement?: AnnouncementReader) {
    this.#set = set;
    this.#log = log;
    this.#announcement = announcement;
  }

  /** Whether the set's messages may carry a pack compressed as a whole. */
  get wholePacks(): boolean {
    return this.#wholePacks;
  }

  /** A status reader that learns from every status it reads. */
  watch(read: (set: string) => Promise<SetStatus | undefined>): (set: string) => Promise<SetStatus | undefined> {
    return async (set) => {
      const status = await read(set);
      await this.learn(status);
      return status;
    };
  }

  /**
   * Learns from a status of the set. What the applier refused meanwhile is recovered from the statuses themselves
   * (refusedWholePack), not from this change: a process that starts after the roll-back never sees one.
   */
  async learn(status: SetStatus | undefined): Promise<void> {
    const announcement = status?.accepts || !this.#announcement ? undefined : await this.#announcement();
    const before = this.#wholePacks;
    this.#wholePacks = acceptsWholePacks(status, announcement);
    if (before === this.#wholePacks) return;
    if (this.#wholePacks) {
      this.#log.info("the applier reads packs compressed as a whole: the set's packs are compressed whole from now on", { set: this.#set });
      return;
    }
    this.#log.error(
      "the applier no longer reads packs compressed as a whole (the stack was rolled back to an older version): packs go per file from now on, and the set is recovered for messages already sent compressed whole, which it refuses",
      { set: this.#set },
    );
  }
}

/** How an applier from before whole packs refuses one: its schema takes the slices to index the compressed pack. */
const WHOLE_PACK_REFUSAL = /packed content ends past the pack's \d+ bytes/;

/** Whether the set's last rejected message is an older applier's refusal of a pack compressed as a whole. */
function isWholePackRefusal(status: SetStatus): boolean {
  const last = status.lastRejected;
  return last !== undefined && last.seq === undefined && WHOLE_PACK_REFUSAL.test(last.error);
}

/**
 * The target passed its last rejected message: a resync applied after it (an applier that writes `resynced`), or,
 * in sync, it moved its applied seq after it (`appliedAt`, which the older applier writes too). Past records it
 * refused, an applier in sync moves only behind a resync, or with those records sent again: either way the mirror
 * holds what they held, or the recovery behind that resync sends it.
 */
function passedRejected(status: SetStatus): boolean {
  const { resynced, lastRejected, appliedAt } = status;
  if (!lastRejected) return false;
  const rejectedAt = Date.parse(lastRejected.at);
  if (resynced && resynced.generation === status.generation && Date.parse(resynced.at) > rejectedAt) return true;
  return status.state === "in-sync" && appliedAt !== undefined && Date.parse(appliedAt) > rejectedAt;
}

/** The set's last rejected message is an older applier's refusal of a whole pack, and the target has not passed it since. */
export function refusedWholePack(status: SetStatus): boolean {
  return isWholePackRefusal(status) && !passedRejected(status);
}

/** What this agent's journal sent of the set: its last seq sent, in its generation. */
export interface SentOfSet {
  readonly sentSeq: number;
  readonly generation: string;
}

/**
 * What `tidemark status` says of the set's last rejected message when it is an older applier's refusal of a whole
 * pack: undefined when it is not one, "superseded" once the target passed it (passedRejected: the older applier
 * writes no `resynced`) or, in sync, applied all this journal sent in its generation.
 */
export function wholePackRefusal(status: SetStatus, set: string, sent?: SentOfSet): string | undefined {
  const last = status.lastRejected;
  if (!last || !isWholePackRefusal(status) || status.accepts?.includes(WHOLE_PACKS)) return undefined;
  if (passedRejected(status)) return "superseded";
  if (sent && status.state === "in-sync" && (status.generation === undefined || status.generation === sent.generation) && sent.sentSeq <= status.lastSeq) return "superseded";
  return (
    `last rejected message ${last.messageId} at ${last.at}: ${last.error}: it carried a pack compressed as a whole, which the set's applier, older than this agent, does not read ` +
    `(the stack was rolled back after the agent learnt it did); the agent sends it per-file packs now and recovers the set (a resync and a mirror), which sends what the message held again. ` +
    `If this stays after the recovery, run \`tidemark mirror ${set} --mode diff\`; updating the stack to this agent's version lets it use whole packs again`
  );
}
