// A set's owner record (state/<set>/owner.json, DESIGN 8): read by the
// applier's ownership check and by `tidemark status`, written when a set's
// first signed message registers its key, and by `tidemark adopt`.

import { ownerKey, statusKey } from "../../contract/layout.ts";
import { OwnerRecordSchema, type OwnerRecord } from "../../contract/signing.ts";
import { withoutKey } from "../applier/refusals.ts";
import { readSetStatus } from "../store/set-status.ts";
import type { TargetStore } from "../store/store.ts";

export class OwnerRecordError extends Error {
  override name = "OwnerRecordError";
}

/** The set's owner record, or undefined when none was registered. Throws OwnerRecordError when it is unreadable. */
export async function readOwner(store: TargetStore, set: string): Promise<OwnerRecord | undefined> {
  const object = await store.get(ownerKey(set));
  if (!object) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(object.body.toString("utf8"));
  } catch (error) {
    throw new OwnerRecordError(`${ownerKey(set)} is not JSON: ${(error as Error).message}`);
  }
  const parsed = OwnerRecordSchema.safeParse(json);
  if (!parsed.success || parsed.data.set !== set) throw new OwnerRecordError(`${ownerKey(set)} is not an owner record of set "${set}"`);
  return parsed.data;
}

export async function writeOwner(store: TargetStore, record: OwnerRecord): Promise<void> {
  await store.put(ownerKey(record.set), Buffer.from(`${JSON.stringify(record, null, 2)}\n`), {});
}

/** What `tidemark adopt` did: the set's new owner, and the one it replaced. */
export interface Adoption {
  readonly owner: OwnerRecord;
  readonly previous?: OwnerRecord;
}

/**
 * Makes key the owner of set (an operator's action: it needs the right to write state/). The checkpoint restarts
 * and the set is out of sync until the new owner's agent mirrors it: the new host's journal does not continue
 * the old one's seqs, and none of its records may be dropped as already applied.
 */
export async function adoptSet(store: TargetStore, set: string, key: { keyId: string; publicKey: string }, now: Date = new Date()): Promise<Adoption> {
  const previous = await readOwner(store, set).catch((error: unknown) => {
    // An unreadable record is what adoption repairs.
    if (error instanceof OwnerRecordError) return undefined;
    throw error;
  });
  const at = now.toISOString();
  const history = previous ? [...previous.previous, { keyId: previous.keyId, since: previous.since, until: at, how: previous.how }] : [];
  const owner: OwnerRecord = { set, keyId: key.keyId, publicKey: key.publicKey, since: at, how: "adopt", previous: history };
  await writeOwner(store, owner);
  const status = await readSetStatus(store, set);
  status.lastSeq = 0;
  status.state = "out-of-sync";
  status.reason = `adopted by key ${key.keyId} at ${at}${previous ? ` (was key ${previous.keyId})` : ""}: waiting for the new owner's mirror`;
  // Refused because this key did not own the set yet: the adoption answers them (another key's refusals stay named).
  // The operator answers a second writer on the journal too (the copy is stopped): the new owner's mirror replaces what either wrote.
  delete status.twoWriters;
  const refused = withoutKey(status.refused, key.keyId);
  if (refused) status.refused = refused;
  else delete status.refused;
  status.updatedAt = at;
  await store.put(statusKey(set), Buffer.from(JSON.stringify(status, null, 2)), {});
  return previous ? { owner, previous } : { owner };
}
