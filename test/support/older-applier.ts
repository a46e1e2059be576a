// An applier as deployed before whole packs (commit c728f9c), for tests of an
// agent newer than its stack: what made it differ is what its schemas drop.
// Its MessagePack schema knew no `encoding` or `decodedSize`, so a whole
// pack's slices end past the (compressed) pack and the message is refused at
// parsing; its SetStatus schema knew none of the fields added since (`accepts`,
// `resynced`, `forgottenGenerations`, `lastRejected.seq` and `generation`), so
// the statuses it writes say nothing of whole packs nor of the resyncs it
// applied; and it wrote no announcement. `older` switches the stack between
// that version and this one (an update, a roll-back).

import { APPLIER_ANNOUNCEMENT_KEY } from "../../contract/applier-accepts.ts";
import { SetStatusSchema, type SetStatus } from "../../contract/layout.ts";
import { Applier, type ApplierOptions, type IncomingMessage, type Invocation, type MessageOutcome } from "../../lambdas/applier/applier.ts";
import type { BatchMemory } from "../../lambdas/applier/batch-memory.ts";
import { SignedOwnership } from "../../lambdas/applier/ownership.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { WriteResult } from "../../lambdas/store/store.ts";

/** The target's bucket, written by the older applier while `older` is true. */
export class OlderApplierStore extends MemoryStore {
  older = true;

  override async put(key: string, body: Uint8Array, meta: Record<string, string> = {}): Promise<WriteResult> {
    if (!this.older) return super.put(key, body, meta);
    // The older applier writes no announcement: what the newer one wrote stays, older than its statuses.
    if (key === APPLIER_ANNOUNCEMENT_KEY) return {};
    if (!key.startsWith("state/") || !key.endsWith("/status.json")) return super.put(key, body, meta);
    return super.put(key, Buffer.from(JSON.stringify(asOlderApplierWritesIt(JSON.parse(Buffer.from(body).toString("utf8"))), null, 2)), meta);
  }
}

export class OlderApplier extends Applier {
  readonly #store: OlderApplierStore;

  constructor(options: ApplierOptions & { readonly store: OlderApplierStore }) {
    const ownership = options.ownership ?? new SignedOwnership(options.store);
    // It recorded every message it could not read as the set's rejection (it knew no `unreadable` check); the body
    // it is handed here, rewritten as its schema reads it, no longer matches the signature, which it never checked then.
    super({ ...options, ownership: { check: (...args) => ownership.check(...args), ...(ownership.checkMarker ? { checkMarker: (...args) => ownership.checkMarker?.(...args) } : {}), unreadable: (...args) => (options.store.older ? Promise.resolve(undefined) : (ownership.unreadable?.(...args) ?? Promise.resolve(undefined))) } });
    this.#store = options.store;
  }

  override applyMessage(incoming: IncomingMessage, invocation?: Invocation, batch?: BatchMemory): Promise<MessageOutcome> {
    return super.applyMessage(this.#store.older ? { ...incoming, body: asOlderApplierReadsIt(incoming.body) } : incoming, invocation, batch);
  }
}

/** A status as the older applier writes it: what its SetStatus schema (git show c728f9c^:contract/layout.ts) did not know is dropped. */
function asOlderApplierWritesIt(written: unknown): Omit<SetStatus, "accepts" | "resynced" | "forgottenGenerations"> {
  const { accepts: _accepts, resynced: _resynced, forgottenGenerations: _forgotten, lastRejected, ...known } = SetStatusSchema.parse(written);
  return { ...known, ...(lastRejected ? { lastRejected: { at: lastRejected.at, messageId: lastRejected.messageId, error: lastRejected.error } } : {}) };
}

/** The body with what the older applier's schema drops dropped; unchanged (its signature still good) when it has none of it. */
function asOlderApplierReadsIt(body: string): string {
  const json = JSON.parse(body) as { pack?: Record<string, unknown> };
  if (!json.pack || !("encoding" in json.pack)) return body;
  const { encoding: _encoding, decodedSize: _decodedSize, ...pack } = json.pack;
  return JSON.stringify({ ...json, pack });
}
