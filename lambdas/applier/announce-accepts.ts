// The applier says what it accepts (contract/applier-accepts.ts): on every set
// status it writes, and once per process in the stack-wide announcement, so an
// agent newer than the stack sends only what this applier reads, and one
// older than it learns nothing it cannot use.

import { APPLIER_ACCEPTS, APPLIER_ANNOUNCEMENT_KEY, type ApplierAnnouncement } from "../../contract/applier-accepts.ts";
import type { SetStatus } from "../../contract/layout.ts";
import type { TargetStore } from "../store/store.ts";

export class AcceptsAnnouncer {
  readonly #store: TargetStore;
  /** The announcement of this process, once written (or while it is). */
  #announced: Promise<void> | undefined;

  constructor(store: TargetStore) {
    this.#store = store;
  }

  /**
   * Stamps the status about to be written, and announces once per process beside that write (retried at the next
   * status write when it failed): the status carries the same words, so nothing waits for the announcement, and its
   * failure (logged) never fails the status write.
   */
  stamp(status: SetStatus, now: Date, log: (line: string) => void): Promise<void> {
    status.accepts = [...APPLIER_ACCEPTS];
    return this.announce(now).catch((error: unknown) => {
      log(JSON.stringify({ level: "warn", msg: "could not write the applier's announcement; retried at the next status write", error: error instanceof Error ? error.message : String(error) }));
    });
  }

  /** Writes the stack-wide announcement, once per process. */
  announce(now: Date): Promise<void> {
    this.#announced ??= this.#write(now).catch((error: unknown) => {
      this.#announced = undefined;
      throw error;
    });
    return this.#announced;
  }

  async #write(now: Date): Promise<void> {
    const announcement: ApplierAnnouncement = { accepts: [...APPLIER_ACCEPTS], at: now.toISOString() };
    await this.#store.put(APPLIER_ANNOUNCEMENT_KEY, Buffer.from(JSON.stringify(announcement, null, 2)), {});
  }
}
