// A host whose state folder was lost (a new key and a new journal) sends its
// new generation's resync before anyone adopted the set for it: the target
// refuses it as not the owner's. After `tidemark adopt`, the target holds the
// generation's later records out of sync, and the agent must resync rather
// than wait for the refused resync forever (the review's walk: status stayed
// NOT IN SYNC through restarts).

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { statusKey, initialStatus, type SetStatus } from "../../contract/layout.ts";
import { generateSigningKey } from "../../contract/signing.ts";
import { adoptSet, writeOwner } from "../../lambdas/target/owner.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { ownerRecordFor } from "../support/messages.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "nm";
let h: Harness;

afterEach(async () => {
  await h.close();
});

it("resyncs after an adoption when the new generation's resync was refused, instead of waiting for it", async () => {
  const store = new MemoryStore();
  // The set as the lost host left it: owned by its old key, ahead of any new journal.
  await writeOwner(store, ownerRecordFor(SET, generateSigningKey()));
  const ahead: SetStatus = { ...initialStatus(SET), lastSeq: 500, generation: "old", generations: [{ id: "old", since: new Date(0).toISOString(), seq: 1, reason: "first" }], updatedAt: new Date(0).toISOString() };
  await store.put(statusKey(SET), Buffer.from(JSON.stringify(ahead)), {});

  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  writeFileSync(join(h.src.path, "a.txt"), "kept");
  await h.agent.start();
  await h.agent.drain(SET);
  // The new generation's resync and mirror were refused: not the owner's key.
  expect(h.transport.outcomes.some((o) => o.kind === "rejected")).toBe(true);
  expect(await pictureOfTarget(store, SET)).not.toEqual(await pictureOfSource(h.src.path));

  expect((await readSetStatus(store, SET)).refused?.last.keyId).toBe(h.transport.key.keyId);
  await adoptSet(store, SET, h.transport.key);
  // Those refusals are answered by the adoption: status does not name them as another sender for a day.
  expect((await readSetStatus(store, SET)).refused).toBeUndefined();
  writeFileSync(join(h.src.path, "b.txt"), "after the adoption");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect(await readSetStatus(store, SET)).toMatchObject({ state: "out-of-sync", heldGeneration: { id: h.journal.sets.generation(SET).id } });

  await h.agent.checkTarget(SET);
  // The resync is on its way now: another look at the target before it arrives sends no second one.
  const sentSeq = h.journal.sets.counters(SET).nextSeq;
  await h.agent.checkTarget(SET);
  expect(h.journal.sets.counters(SET).nextSeq).toBe(sentSeq);
  await h.agent.drain(SET);
  expect(await readSetStatus(store, SET)).toMatchObject({ state: "in-sync", generation: h.journal.sets.generation(SET).id });
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("keeps another key's refusals named when a set is adopted", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, {}, { store });
  const rogue = { at: new Date(0).toISOString(), messageId: "m1", reason: "signed by key r", keyId: "rogue" };
  await store.put(statusKey(SET), Buffer.from(JSON.stringify({ ...initialStatus(SET), refused: { count: 2, last: rogue }, updatedAt: rogue.at })), {});
  await adoptSet(store, SET, h.transport.key);
  expect((await readSetStatus(store, SET)).refused).toMatchObject({ count: 2, last: rogue });
});
