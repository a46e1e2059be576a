// Refusals are kept per sending key (lambdas/applier/refusals.ts): `tidemark
// adopt` answers only the adopted key's, a rogue key's stay named with their
// count, and a flood of key ids cannot grow the set's status without limit.

import { expect, it } from "vitest";
import { initialStatus, statusKey } from "../../contract/layout.ts";
import { generateSigningKey, type SigningKey } from "../../contract/signing.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MAX_NAMED_KEYS, OTHER_KEYS, withRefusal } from "../../lambdas/applier/refusals.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { adoptSet, writeOwner } from "../../lambdas/target/owner.ts";
import { messageBody, ownerRecordFor, putRecord, signedIncoming } from "../support/messages.ts";

const SET = "www";

async function refusedBy(applier: Applier, key: SigningKey, times: number, tag: string): Promise<void> {
  for (let i = 0; i < times; i++) {
    const outcome = await applier.applyMessage(signedIncoming(`${tag}-${i}`, SET, messageBody(SET, [putRecord(1, "a", tag)]), key));
    expect(outcome).toMatchObject({ kind: "rejected", error: expect.stringMatching(/belongs to key/) });
  }
}

it("adopting a key answers its own refusals and keeps a rogue key's, with their count and last message", async () => {
  const store = new MemoryStore();
  const [owner, rogue, host] = [generateSigningKey(), generateSigningKey(), generateSigningKey()];
  await writeOwner(store, ownerRecordFor(SET, owner));
  const applier = new Applier({ store, log: () => {} });
  await refusedBy(applier, rogue, 5, "rogue");
  await refusedBy(applier, host, 1, "host");
  expect((await readSetStatus(store, SET)).refused).toMatchObject({ count: 6, last: { keyId: host.keyId, messageId: "host-0" } });

  await adoptSet(store, SET, host);
  const refused = (await readSetStatus(store, SET)).refused;
  expect(refused).toMatchObject({ count: 5, last: { keyId: rogue.keyId, messageId: "rogue-4" } });
  expect(Object.keys(refused?.byKey ?? {})).toEqual([rogue.keyId]);

  await adoptSet(store, SET, rogue);
  expect((await readSetStatus(store, SET)).refused).toBeUndefined();
});

it("keeps an old status's refusals unless all of them are provably the adopted key's", async () => {
  const host = generateSigningKey();
  const last = { at: new Date(0).toISOString(), messageId: "m1", reason: "signed by another key", keyId: host.keyId };
  for (const [count, kept] of [[1, false], [3, true]] as const) {
    const store = new MemoryStore();
    await store.put(statusKey(SET), Buffer.from(JSON.stringify({ ...initialStatus(SET), refused: { count, last }, updatedAt: last.at })), {});
    await adoptSet(store, SET, host);
    expect((await readSetStatus(store, SET)).refused, `count ${count}`).toEqual(kept ? { count, last, byKey: { [OTHER_KEYS]: { count, last } } } : undefined);
  }
});

it("names at most MAX_NAMED_KEYS keys and folds the rest into one entry, the totals still exact", () => {
  let refused = withRefusal(undefined, { at: "2026-01-01T00:00:00.000Z", messageId: "unsigned", reason: "no signature" });
  for (let i = 0; i < MAX_NAMED_KEYS + 10; i++) {
    refused = withRefusal(refused, { at: `2026-01-01T00:00:${String(i).padStart(2, "0")}.000Z`, messageId: `m${i}`, reason: "forged", keyId: `key${i}` });
  }
  refused = withRefusal(refused, { at: "2026-01-02T00:00:00.000Z", messageId: "again", reason: "forged", keyId: "key0" });
  const byKey = refused.byKey ?? {};
  expect(Object.keys(byKey)).toHaveLength(MAX_NAMED_KEYS + 1);
  expect(byKey.unsigned?.count).toBe(1);
  expect(byKey.key0?.count).toBe(2);
  expect(byKey[OTHER_KEYS]).toMatchObject({ count: 11, last: { messageId: `m${MAX_NAMED_KEYS + 9}` } });
  expect(refused).toMatchObject({ count: MAX_NAMED_KEYS + 12, last: { messageId: "again" } });
});
