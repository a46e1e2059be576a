// On an unversioned bucket, what an overwrite, move or delete replaces is
// copied to preserved/<set>/<sha256> first, once per content hash. The
// applier instance's LiveContent spares the requests it can answer: a hash
// it copied or listed there is not copied again (no HEAD); while it knows
// every hash there (it listed preserved/ at the last checkpoint or retention
// and made every copy since) a hash it does not know is copied without the
// HEAD that would look for it, on the condition that the live object is
// still the one whose ETag it knows. Another instance may have applied part
// of a message and died since (the status, and so the trust check, does not
// move then): the object changed, the copy is refused (SourceChangedError)
// and the caller asks the store what is there. Without a known ETag the HEAD
// of preserved/<sha256> stays: absent, the object still holds that content,
// since whatever replaced it preserved it first. Errs only towards copying: a
// copy onto an existing preserved/<sha256> writes the same bytes again.
// Files of one step that hold the same content make one copy between them.

import { META, preservedKey, preservedPrefix } from "../../contract/layout.ts";
import type { TargetStore } from "../store/store.ts";
import { PRESERVED_LISTED, type LiveContent } from "./live-content.ts";

/** Copies the content sha256 of the live object at key to preserved/ unless it is known to be there. */
export async function preserveContent(store: TargetStore, set: string, key: string, sha256: string, live: LiveContent): Promise<void> {
  const known = live.preservedKnown(sha256);
  if (known === true) return;
  const etag = live.etagAt(key);
  await live.copyOnce(sha256, async () => {
    const target = preservedKey(set, sha256);
    const unchecked = known === undefined || etag === undefined;
    if (unchecked && (await store.head(target))) {
      live.preserved(sha256);
      return;
    }
    await store.copy(key, target, { [META.sha256]: sha256 }, etag !== undefined ? { ifMatch: etag } : {});
    live.preserved(sha256);
  });
}

/**
 * Lists the set's preserved/ into the instance's LiveContent (at a checkpoint,
 * and after retention deleted some): at most `limit` hashes, beyond which it
 * stops and the store is asked per hash, as on a cold instance.
 */
export async function listPreserved(store: TargetStore, set: string, live: LiveContent, limit = PRESERVED_LISTED): Promise<void> {
  const prefix = preservedPrefix(set);
  const hashes: string[] = [];
  for await (const object of store.list(prefix)) {
    if (hashes.length >= limit) {
      live.seedPreserved(undefined);
      return;
    }
    hashes.push(object.key.slice(prefix.length));
  }
  live.seedPreserved(hashes);
}
