// `tidemark doctor`'s check of this host's signing key against the place it
// was made for (owner-place.ts): a state folder that is a copy (the next
// start gives this host a new key), or one whose key was made because it was
// found copied, while the target's owner records of its sets name another key
// (the original host's): its sends are held until `tidemark adopt`.

import type { Check } from "./doctor.ts";
import { readOwnerKey } from "./owner-key.ts";
import { copiedKeyOf, currentPlace, describePlace, judgePlace, readOwnerPlace, type CopiedKey } from "./owner-place.ts";

/** What doctor says of the key needs: its id, whether the folder is a copy now, and why the key was made if for a copy. */
export interface OwnerKeyFacts {
  readonly keyId: string;
  /** The state folder is a copy of this place now (the next load of the key makes a new one), and why. */
  readonly copyOf?: { readonly from: string; readonly why: string };
  /** The key was made because the state folder was found copied. */
  readonly copied?: CopiedKey;
}

/** Undefined when the state folder has no readable key (the agent makes or names it). */
export function ownerKeyFacts(stateDir: string, machineIdFiles?: readonly string[]): OwnerKeyFacts | undefined {
  let keyId: string;
  try {
    const key = readOwnerKey(stateDir);
    if (!key) return undefined;
    keyId = key.keyId;
  } catch {
    return undefined;
  }
  const place = readOwnerPlace(stateDir);
  const verdict = judgePlace(place, keyId, currentPlace(stateDir, machineIdFiles));
  const copied = copiedKeyOf(place, keyId);
  return { keyId, ...(verdict.kind === "copy" ? { copyOf: { from: describePlace(verdict.from), why: verdict.why } } : {}), ...(copied ? { copied } : {}) };
}

/**
 * The check, when there is something to say. `owners`: the key each set's owner record names (undefined: none), or
 * undefined when the target could not be read.
 */
export function checkOwnerKey(facts: OwnerKeyFacts | undefined, owners: ReadonlyMap<string, string | undefined> | undefined): Check | undefined {
  if (!facts) return undefined;
  if (facts.copyOf) {
    return {
      name: "owner key",
      level: "warn",
      detail: `this state folder is a copy: its key ${facts.keyId} was made for ${facts.copyOf.from} (${facts.copyOf.why}); the next \`tidemark run\`, \`init\` or \`adopt\` sets that key aside and makes this host a new one, whose sends are held (not-owner) until \`tidemark adopt SET\` is run here; on a cloned machine give it a new machine id first`,
    };
  }
  const copied = facts.copied;
  if (!copied) return undefined;
  const made = `key ${facts.keyId} made at ${copied.at} because the state folder was found to be a copy (its key ${copied.keyId} was made for ${describePlace(copied.from)}; set aside as ${copied.setAside})`;
  if (owners === undefined) return { name: "owner key", level: "warn", detail: `${made}; the target's owner records could not be read to tell whether this host owns its sets` };
  const elsewhere = [...owners].filter(([, keyId]) => keyId !== undefined && keyId !== facts.keyId).map(([set, keyId]) => `${set} (key ${keyId})`);
  if (elsewhere.length === 0) return { name: "owner key", level: "ok", detail: `${made}; this host owns its sets on the target` };
  return {
    name: "owner key",
    level: "warn",
    detail: `${made}; the target's owner records still name another key for ${elsewhere.join(", ")}, so this host's sends of them are held (not-owner): run \`tidemark adopt SET\` here if this host replaces the original`,
  };
}
