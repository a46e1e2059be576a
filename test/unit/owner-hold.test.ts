// An agent whose set the target's owner record gives to another key holds the
// set's sends (the target would refuse them: paid traffic for nothing) while
// its journal keeps recording, and sends by itself, without a restart, once
// the record names its key (`tidemark adopt`). A set with no owner record
// (first use) or an unreadable one is never held.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { initialStatus, ownerKey, verifyReportKey, VerifyReportSchema } from "../../contract/layout.ts";
import { findProblems, type SetFacts } from "../../agent/set-health.ts";
import { generateSigningKey, type SigningKey } from "../../contract/signing.ts";
import { OwnerHold, SendsHeldError, type OwnerFact } from "../../agent/owner-hold.ts";
import { silentLogger } from "../../agent/log.ts";
import { HeldWaitError } from "../../agent/held-wait.ts";
import { recoverSet, runVerify } from "../../agent/operations.ts";
import { adoptSet, readOwner, writeOwner } from "../../lambdas/target/owner.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { eventually } from "../support/local-cloud.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { ownerRecordFor } from "../support/messages.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "nm";
const HOUR_MS = 3_600_000;
let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** An agent sending in the background with this host's key, its owner record read through a counter. */
function agentOf(store: MemoryStore, recheck: { recheckMs: number; rescanMs: number }): { harness: Harness; reads: () => number } {
  const key = generateSigningKey();
  let reads = 0;
  const harness = agentHarness(
    SET,
    {
      monitorEnabled: true,
      statusPollMs: 20,
      rescanMs: recheck.rescanMs,
      watch: () => ({ close: async () => undefined }),
      targetStatus: (set) => readSetStatus(store, set),
      owner: {
        hostKeyId: key.keyId,
        lookup: async (set) => {
          reads++;
          return readOwner(store, set);
        },
        recheckMs: recheck.recheckMs,
      },
    },
    { store },
  );
  // The transport signs what the agent sends: with this host's key.
  harness.transport.key = key;
  h = harness;
  return { harness, reads: () => reads };
}

async function holdsThenResumes(recheck: { recheckMs: number; rescanMs: number }): Promise<void> {
  const store = new MemoryStore();
  await writeOwner(store, ownerRecordFor(SET, generateSigningKey()));
  const { harness, reads } = agentOf(store, recheck);
  for (let i = 0; i < 20; i++) writeFileSync(join(harness.src.path, `f${i}.txt`), `file ${i}`.repeat(100));
  await harness.agent.start();

  await eventually(async () => expect(harness.agent.sendsHeld(SET)).toBe(true), 10_000, 5);
  const readsThen = reads();
  // The set stays held while the sender goes round (and the record is read again): nothing sent, the journal keeps it all.
  if (recheck.recheckMs < HOUR_MS) await eventually(async () => expect(reads()).toBeGreaterThan(readsThen + 2), 10_000, 5);
  writeFileSync(join(harness.src.path, "late.txt"), "journaled while held");
  await harness.agent.scan(SET);
  expect(harness.agent.sendsHeld(SET)).toBe(true);
  expect(harness.transport.bodies).toHaveLength(0);
  expect(harness.journal.sets.counters(SET).backlogRecords).toBeGreaterThan(20);

  await adoptSet(store, SET, harness.transport.key);
  await eventually(async () => expect(harness.agent.sendsHeld(SET)).toBe(false), 10_000, 5);
  await eventually(async () => expect(await readSetStatus(store, SET)).toMatchObject({ state: "in-sync", generation: harness.journal.sets.generation(SET).id }), 20_000, 20);
  await eventually(async () => expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(harness.src.path)), 20_000, 20);
  // Refused messages would have been named on the target: none was sent to be refused.
  expect((await readSetStatus(store, SET)).refused).toBeUndefined();
}

it("holds a set's sends while the target's owner record names another key, and resumes without a restart once it names this host's (periodic re-check)", async () => {
  await holdsThenResumes({ recheckMs: 20, rescanMs: HOUR_MS });
});

it("re-reads a held set's owner record at each rescan", async () => {
  await holdsThenResumes({ recheckMs: HOUR_MS, rescanMs: 30 });
});

/** The agent sends (is not held) with the owner record as prepare leaves it. */
async function sends(prepare: (store: MemoryStore, hostKey: SigningKey) => Promise<void>): Promise<Harness> {
  const store = new MemoryStore();
  const { harness, reads } = agentOf(store, { recheckMs: 20, rescanMs: HOUR_MS });
  await prepare(store, harness.transport.key);
  writeFileSync(join(harness.src.path, "a.txt"), "a");
  await harness.agent.start();
  await eventually(async () => expect(harness.transport.bodies.length).toBeGreaterThan(0), 10_000, 5);
  expect(reads()).toBeGreaterThan(0);
  expect(harness.agent.sendsHeld(SET)).toBe(false);
  return harness;
}

it("never holds a set the target has no owner record for (its first use registers this host)", async () => {
  const harness = await sends(async () => undefined);
  await eventually(async () => expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(harness.src.path)), 20_000, 20);
});

it("never holds a set whose owner record is unreadable", async () => {
  await sends(async (store) => {
    await store.put(ownerKey(SET), Buffer.from("not json"), {});
  });
});

it("does not hold a set whose owner record names this host's key", async () => {
  const harness = await sends((store, hostKey) => writeOwner(store, ownerRecordFor(SET, hostKey)));
  await eventually(async () => expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(harness.src.path)), 20_000, 20);
});

it("status names a held set's sends and an unreadable owner record", () => {
  const counters = { nextSeq: 1, sentSeq: 0, backlogRecords: 3, backlogBytes: 30, messagesSent: 0, bytesSent: 0, lastSendError: null, overflowed: false, watcherProblem: null };
  const base: SetFacts = { set: SET, counters, generation: undefined, target: { status: initialStatus(SET) }, now: new Date() };
  const notOwner = findProblems({ ...base, notOwner: { ownerKeyId: "aaaa", ownerSince: "2026-01-01T00:00:00Z", hostKeyId: "bbbb" } });
  expect(notOwner.map((p) => p.kind)).toEqual(["not-owner"]);
  expect(notOwner[0]?.message).toContain(`the agent holds the set's sends (its journal keeps recording) until \`tidemark adopt ${SET}\``);
  const unreadable = findProblems({ ...base, ownerUnreadable: "state/nm/owner.json is not JSON" });
  expect(unreadable.map((p) => p.kind)).toEqual(["owner-unreadable"]);
  expect(unreadable[0]?.message).toMatch(/owner record of the set cannot be read \(state\/nm\/owner.json is not JSON\).*the agent keeps sending/);
});

it("reads the owner record again only once the re-check interval passed", async () => {
  let now = 0;
  let owner: OwnerFact | undefined = { keyId: "other", since: "then" };
  let reads = 0;
  const hold = new OwnerHold({
    set: SET,
    hostKeyId: "mine",
    lookup: async () => {
      reads++;
      if (owner === undefined) throw new Error("unreachable");
      return owner;
    },
    log: silentLogger,
    recheckMs: 1_000,
    now: () => now,
  });
  expect(await hold.holds()).toBe(true);
  owner = { keyId: "mine", since: "now" };
  now = 999;
  expect(await hold.holds()).toBe(true);
  expect(reads).toBe(1);
  now = 1_000;
  expect(await hold.holds()).toBe(false);
  expect(reads).toBe(2);
  owner = { keyId: "other", since: "later" };
  await hold.recheck();
  expect(hold.held).toBe(true);
  // A read that fails never holds.
  owner = undefined;
  await hold.recheck();
  expect(hold.held).toBe(false);
  // A new refusal of this host's key reads the record before the interval ends; another key's, or the same count again, does not.
  owner = { keyId: "other", since: "adopted" };
  const before = reads;
  await hold.refusedBy({ count: 3, last: { keyId: "someone" } });
  expect(reads).toBe(before);
  await hold.refusedBy({ count: 3, last: { keyId: "mine" } });
  expect(reads).toBe(before + 1);
  expect(hold.held).toBe(true);
  await hold.refusedBy({ count: 3, last: { keyId: "mine" } });
  expect(reads).toBe(before + 1);
});

it("does not wait for a due re-read while the set sends, and holds the send after it once the record names another key", async () => {
  let now = 0;
  let answer: (owner: OwnerFact | undefined) => void = () => undefined;
  let reads = 0;
  const hold = new OwnerHold({
    set: SET,
    hostKeyId: "mine",
    lookup: () => {
      reads++;
      return new Promise<OwnerFact | undefined>((resolve) => (answer = resolve));
    },
    log: silentLogger,
    recheckMs: 1_000,
    now: () => now,
  });
  // The first read is waited for: nothing is sent before the record was read once.
  const first = hold.holds();
  answer({ keyId: "mine", since: "then" });
  expect(await first).toBe(false);
  now = 1_000;
  // Due again: the read starts, the send does not wait for it.
  expect(await hold.holds()).toBe(false);
  expect(reads).toBe(2);
  answer({ keyId: "other", since: "adopted" });
  await hold.recheck();
  expect(await hold.holds()).toBe(true);
});

it("a drain (in-process task, verify, mirror) sends nothing while held and says why, and sends once the set is adopted", async () => {
  const store = new MemoryStore();
  const other = generateSigningKey();
  await writeOwner(store, ownerRecordFor(SET, other));
  const { harness } = agentOf(store, { recheckMs: 0, rescanMs: HOUR_MS });
  for (let i = 0; i < 5; i++) writeFileSync(join(harness.src.path, `f${i}.txt`), `file ${i}`);
  await harness.agent.start();
  await harness.agent.scan(SET);
  const records = harness.journal.sets.counters(SET).backlogRecords;
  expect(records).toBeGreaterThan(0);

  const held = await harness.agent.drain(SET).then(
    () => undefined,
    (error: unknown) => error,
  );
  expect(held).toBeInstanceOf(SendsHeldError);
  const message = held instanceof Error ? held.message : "";
  expect(message).toContain(`set "${SET}": ${records} record(s) journaled, not sent`);
  expect(message).toContain(`names key ${other.keyId}`);
  expect(message).toContain(`not this host's key ${harness.transport.key.keyId}`);
  expect(message).toContain(`tidemark adopt ${SET}`);
  expect(harness.transport.bodies).toHaveLength(0);
  expect(harness.journal.sets.counters(SET).backlogRecords).toBe(records);

  await adoptSet(store, SET, harness.transport.key);
  await harness.agent.drain(SET);
  expect(harness.transport.bodies.length).toBeGreaterThan(0);
  // The adoption asks the new owner for a full mirror: the agent's recovery sends it.
  await eventually(async () => expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(harness.src.path)), 20_000, 20);
});

it("an operator's operation waiting on the target (verify) fails at once while the set's sends are held, instead of waiting out the stall limit", async () => {
  const store = new MemoryStore();
  const other = generateSigningKey();
  await writeOwner(store, ownerRecordFor(SET, other));
  const { harness } = agentOf(store, { recheckMs: HOUR_MS, rescanMs: HOUR_MS });
  writeFileSync(join(harness.src.path, "a.txt"), "a");
  await harness.agent.start();

  // As in `tidemark run`: the report is read from the target while the sender goes on by itself (no drain per read).
  const deps = { ...harness.operations(), readReport: async () => undefined, timeoutMs: 60_000, stallMs: 60_000 };
  const failed = await runVerify(deps, SET, { deep: false, repair: false, orphans: "delete" }).catch((error: unknown) => error);
  expect(failed).toBeInstanceOf(HeldWaitError);
  const message = failed instanceof Error ? failed.message : "";
  expect(message).toContain(`of set "${SET}" will not be reached while this host's sends of the set are held`);
  expect(message).toContain(`names key ${other.keyId}`);
  expect(message).toContain(`tidemark adopt ${SET}`);
  expect(harness.transport.bodies).toHaveLength(0);
});

it("the agent's own recovery keeps waiting while the set's sends are held (past its stall limit), and completes once the set is adopted", async () => {
  const store = new MemoryStore();
  await writeOwner(store, ownerRecordFor(SET, generateSigningKey()));
  const { harness } = agentOf(store, { recheckMs: 20, rescanMs: HOUR_MS });
  for (let i = 0; i < 3; i++) writeFileSync(join(harness.src.path, `f${i}.txt`), `file ${i}`);
  await harness.agent.start();
  await eventually(async () => expect(harness.agent.sendsHeld(SET)).toBe(true), 10_000, 5);

  // The reports are read as `tidemark run` reads them: from the target, the sender sending by itself.
  const deps = {
    ...harness.operations(),
    readReport: async (set: string, id: string) => {
      const object = await store.get(verifyReportKey(set, id));
      return object && VerifyReportSchema.parse(JSON.parse(object.body.toString()));
    },
    // Short enough to pass several times while held; long enough for the target to move once adopted, on a loaded machine too (the deadline's pause: held-wait.test.ts).
    stallMs: 2_000,
    pollMs: 2,
  };
  let outcome: "waiting" | "recovered" | Error = "waiting";
  const recovery = recoverSet(deps, SET, "test: out of sync", "diff", "delete").then(
    () => (outcome = "recovered"),
    (error: unknown) => (outcome = error instanceof Error ? error : new Error(String(error))),
  );
  // Well past the stall limit (a wait that counted the hold would have failed by now).
  await new Promise((resolve) => setTimeout(resolve, 5_000));
  expect(harness.agent.sendsHeld(SET)).toBe(true);
  expect(outcome).toBe("waiting");
  expect(harness.transport.bodies).toHaveLength(0);

  await adoptSet(store, SET, harness.transport.key);
  await recovery;
  expect(outcome).toBe("recovered");
  await eventually(async () => expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(harness.src.path)), 20_000, 20);
});
