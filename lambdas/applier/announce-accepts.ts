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

  /** Stamps the status about to be written, and announces once per process (retried at the next status write when it failed). */
  async stamp(status: SetStatus, now: Date): Promise<void> {
    status.accepts = [...APPLIER_ACCEPTS];
    await this.announce(now);
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
