// Holds a set's sends while the target's owner record names another key than
// this host's: the target would refuse every message (paid traffic for
// nothing). The journal keeps recording meanwhile, so nothing is lost; the
// record is read again every so often (and at each rescan), and sends resume
// by themselves once it names this host's key (after `tidemark adopt`). Only
// a record read and naming another key holds: none (a set's first use), an
// unreadable one or a failed read never does.

import { describeHold, type HeldBy } from "./held-wait.ts";
import type { Logger } from "./log.ts";

/** What the hold needs of a set's owner record; undefined when the target has none. */
export interface OwnerFact {
  readonly keyId: string;
  readonly since: string;
}

/** Reads the set's owner record on the target; throws when it cannot be read. */
export type OwnerLookup = (set: string) => Promise<OwnerFact | undefined>;

/** How often a held set's owner record is read again. */
export const OWNER_RECHECK_MS = 60_000;

export interface OwnerHoldOptions {
  readonly set: string;
  readonly hostKeyId: string;
  readonly lookup: OwnerLookup;
  readonly log: Logger;
  /** @default OWNER_RECHECK_MS */
  readonly recheckMs?: number;
  readonly now?: () => number;
}

/** A drain (an in-process `tidemark task`, `verify`, `mirror` ...) found the set's sends held: what it journaled stays unsent. */
export class SendsHeldError extends Error {
  override readonly name = "SendsHeldError";
  constructor(set: string, records: number, reason: string) {
    super(
      `set "${set}": ${records} record(s) journaled, not sent: ${reason}, and would refuse them; the journal keeps them; run \`tidemark adopt ${set}\` on this host if it should replicate the set (they are sent then)`,
    );
  }
}

export class OwnerHold {
  readonly #options: OwnerHoldOptions;
  /** The owner key that holds the sends; undefined when they go. */
  #heldBy: string | undefined;
  /** Since when the owner record names that key. */
  #heldSince = "?";
  #checkedAt = Number.NEGATIVE_INFINITY;
  #checking: Promise<void> | undefined;
  /** The last read's error, logged once per distinct message. */
  #lastError: string | undefined;
  #checks = 0;
  /** The target's count of refused messages when this host's key was last seen refused. */
  #refusedCount: number | undefined;

  constructor(options: OwnerHoldOptions) {
    this.#options = options;
  }

  /** True while the target's owner record (as last read) names another key. */
  get held(): boolean {
    return this.#heldBy !== undefined;
  }

  /** Why the sends are held (undefined when they go): the key the owner record names instead of this host's. */
  get reason(): string | undefined {
    const held = this.heldBy;
    return held && describeHold(held);
  }

  /** Who holds the sends (undefined when they go): the key the owner record names, and this host's. */
  get heldBy(): HeldBy | undefined {
    if (this.#heldBy === undefined) return undefined;
    return { set: this.#options.set, ownerKeyId: this.#heldBy, ownerSince: this.#heldSince, hostKeyId: this.#options.hostKeyId };
  }

  /** How many times the owner record was read (or its read failed). */
  get checks(): number {
    return this.#checks;
  }

  /**
   * Whether the sends are held, reading the owner record again when the last read is older than the re-check
   * interval: waiting for that read before the first send and while held; a set that sends goes on meanwhile, so
   * the read adds no wait to its stream (a record found to name another key holds the next send).
   */
  async holds(): Promise<boolean> {
    const now = (this.#options.now ?? Date.now)();
    if (now - this.#checkedAt >= (this.#options.recheckMs ?? OWNER_RECHECK_MS)) {
      const reading = this.recheck();
      if (this.#checks === 0 || this.held) await reading;
    }
    return this.held;
  }

  /**
   * The target's status named a refusal of this host's key: the owner record changed (an adoption by another
   * host) before the next periodic read. A new refusal reads it now, so little more is sent to be refused.
   */
  refusedBy(refused: { readonly count: number; readonly last: { readonly keyId?: string } } | undefined): Promise<void> {
    if (refused?.last.keyId !== this.#options.hostKeyId || refused.count === this.#refusedCount) return Promise.resolve();
    this.#refusedCount = refused.count;
    return this.recheck();
  }

  /** Reads the owner record now (one read at a time). */
  recheck(): Promise<void> {
    this.#checking ??= this.#read().finally(() => (this.#checking = undefined));
    return this.#checking;
  }

  async #read(): Promise<void> {
    const { set, hostKeyId, lookup, log } = this.#options;
    let owner: OwnerFact | undefined;
    try {
      owner = await lookup(set);
      this.#lastError = undefined;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (message !== this.#lastError) log.warn("the target's owner record of the set could not be read; sending anyway (only a record naming another key holds the sends)", { set, error: message });
      this.#lastError = message;
      owner = undefined;
    } finally {
      this.#checks++;
      this.#checkedAt = (this.#options.now ?? Date.now)();
    }
    const heldBy = owner !== undefined && owner.keyId !== hostKeyId ? owner.keyId : undefined;
    const wasHeld = this.#heldBy !== undefined;
    this.#heldBy = heldBy;
    this.#heldSince = owner?.since ?? "?";
    if (heldBy !== undefined && !wasHeld) {
      log.warn(`sends held: ${this.reason ?? ""}, and would refuse them; the journal keeps recording; run \`tidemark adopt ${set}\` on this host if it should replicate the set`, { set });
    } else if (heldBy === undefined && wasHeld) {
      log.info("sends resume: the target's owner record no longer names another key", { set, ownerKeyId: owner?.keyId ?? null });
    }
  }
}
