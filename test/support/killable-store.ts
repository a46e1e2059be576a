// A memory store whose writes fail from the n-th on, once, while `failAfter`
// is set: an applier killed at that write (mid-message or mid-batch), for
// tests that apply again and check the target converges.

import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { CopyOptions, WriteResult } from "../../lambdas/store/store.ts";

export class KillableStore extends MemoryStore {
  failAfter: number | undefined;
  kills = 0;
  #writes = 0;

  #write(): void {
    if (this.failAfter === undefined) return;
    this.#writes += 1;
    if (this.#writes < this.failAfter) return;
    this.failAfter = undefined;
    this.#writes = 0;
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
