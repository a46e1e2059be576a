// A memory store whose writes fail from the n-th on while `failAfter` is set:
// an applier killed at that write (mid-message or mid-batch), for tests that
// apply again and check the target converges. A killed applier writes nothing
// more, even where it would catch a failure and go on (the announcement of
// what it reads is one such write): every write fails until `failAfter` is
// set again (undefined: the next delivery, a fresh process).

import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { CopyOptions, WriteResult } from "../../lambdas/store/store.ts";

export class KillableStore extends MemoryStore {
  kills = 0;
  #failAfter: number | undefined;
  #writes = 0;
  #dead = false;

  get failAfter(): number | undefined {
    return this.#failAfter;
  }

  set failAfter(at: number | undefined) {
    this.#failAfter = at;
    this.#writes = 0;
    this.#dead = false;
  }

  #write(): void {
    if (this.#dead) throw new Error("applier killed");
    if (this.#failAfter === undefined) return;
    this.#writes += 1;
    if (this.#writes < this.#failAfter) return;
    this.#failAfter = undefined;
    this.#dead = true;
    this.kills += 1;
    throw new Error("applier killed");
  }

  override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
    this.#write();
    return super.put(key, body, meta);
  }

  override async copy(from: string, to: string, meta: Record<string, string>, options?: CopyOptions): Promise<WriteResult> {
    this.#write();
    return super.copy(from, to, meta, options);
  }

  override async delete(key: string): Promise<void> {
    this.#write();
    return super.delete(key);
  }
}
