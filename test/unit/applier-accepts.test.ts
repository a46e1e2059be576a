// An agent newer than its stack (contract/applier-accepts.ts): the agent
// compresses a message's pack as a whole only once the set's applier said it
// reads such packs; otherwise each file on its own, the form every applier
// reads. A stack rolled back after the agent learnt it gets per-file packs
// again, and what it refused is named in status and sent again.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../agent/agent.ts";
import { cachedAnnouncement } from "../../agent/applier-accepts.ts";
import { Journal } from "../../agent/journal.ts";
import { findProblems } from "../../agent/set-health.ts";
import { APPLIER_ANNOUNCEMENT_KEY } from "../../contract/applier-accepts.ts";
import { parseMessage, type WireMessage } from "../../contract/wire.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { readApplierAnnouncement } from "../../lambdas/target/readers.ts";
import { MemoryTransport } from "../support/memory-transport.ts";
import { generateSigningKey } from "../../contract/signing.ts";
import type { MessageOutcome } from "../../lambdas/applier/applier.ts";
import type { MessageAttributes, StagedPayload, Transport } from "../../agent/transport/transport.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";
import { OlderApplier, OlderApplierStore } from "../support/older-applier.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "docs";

/**
 * The stack's queue and applier: `deploy` puts a new applier process in place (the older version or this one), as
 * an update or a roll-back of the stack does; the messages and outcomes of every one are kept.
 */
class Stack implements Transport {
  readonly store: OlderApplierStore;
  readonly #key = generateSigningKey();
  #current: MemoryTransport;
  readonly #deployed: MemoryTransport[] = [];

  constructor(store: OlderApplierStore, older: boolean) {
    this.store = store;
    this.#current = this.deploy(older);
  }

  deploy(older: boolean): MemoryTransport {
    this.store.older = older;
    this.#current = new MemoryTransport(new OlderApplier({ store: this.store, log: () => {} }), this.store, this.#key);
    this.#deployed.push(this.#current);
    return this.#current;
  }

  get bodies(): string[] {
    return this.#deployed.flatMap((transport) => transport.bodies);
  }

  get outcomes(): MessageOutcome[] {
    return this.#deployed.flatMap((transport) => transport.outcomes);
  }

  stage(payload: StagedPayload): Promise<void> {
    return this.#current.stage(payload);
  }

  /** While set, sends wait for it: what the agent does while a message is on the wire. */
  gate: Promise<void> | undefined;
  /** Sends waiting on the gate. */
  waiting = 0;

  /** While set, the queue takes messages and the applier gets them only at deliver(): messages in flight. */
  queued: (() => Promise<void>)[] | undefined;

  async send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    if (this.gate) {
      this.waiting += 1;
      await this.gate;
      this.waiting -= 1;
    }
    const current = this.#current;
    if (this.queued) this.queued.push(() => current.send(set, deduplicationId, body, attributes));
    else return current.send(set, deduplicationId, body, attributes);
  }

  /** The applier gets the messages the queue took meanwhile. */
  async deliver(): Promise<void> {
    const queued = this.queued ?? [];
    this.queued = undefined;
    for (const send of queued) await send();
  }
}

interface Setup {
  readonly src: ReturnType<typeof tempDir>;
  readonly state: ReturnType<typeof tempDir>;
  readonly store: OlderApplierStore;
  readonly transport: Stack;
  readonly journal: Journal;
  agent: Agent;
  /** The recoveries the agent began (each a full mirror behind a resync). */
  readonly recoveries: Promise<unknown>[];
}

let setup: Setup | undefined;

afterEach(async () => {
  if (!setup) return;
  await setup.agent.stop();
  setup.journal.close();
  setup.src.remove();
  setup.state.remove();
  setup = undefined;
});

/** An agent of this version replicating SET to a stack whose applier is the older one while `older`. */
function start(older: boolean, store = new OlderApplierStore()): Setup {
  const src = tempDir("tidemark-src-");
  const state = tempDir("tidemark-state-");
  const transport = new Stack(store, older);
  const journal = Journal.open(state.path);
  const recoveries: Promise<unknown>[] = [];
  setup = { src, state, store, transport, journal, agent: newAgent(src.path, store, transport, journal, recoveries), recoveries };
  return setup;
}

function newAgent(root: string, store: OlderApplierStore, transport: Stack, journal: Journal, recoveries: Promise<unknown>[]): Agent {
  const agent: Agent = new Agent({
    sets: [{ name: SET, root, exclude: [] }],
    journal,
    transport,
    monitorEnabled: false,
    targetStatus: (set) => readSetStatus(store, set),
    applierAnnouncement: cachedAnnouncement(() => readApplierAnnouncement(store)),
    recover: async (set, reason) => {
      recoveries.push(agent.fullMirror(set, reason));
    },
  });
  return agent;
}

/** The agent stops and a new process starts on the same journal (a restart, a reboot, an update of the agent). */
async function restart(current: Setup): Promise<Agent> {
  await current.agent.stop();
  current.agent = newAgent(current.src.path, current.store, current.transport, current.journal, current.recoveries);
  await current.agent.start();
  return current.agent;
}

/** What `tidemark status` finds wrong with the set now. */
async function problems(current: Setup) {
  const { journal, store } = current;
  return findProblems({ set: SET, counters: journal.sets.counters(SET), generation: journal.sets.generation(SET), target: { status: await readSetStatus(store, SET) }, now: new Date() });
}

/** An agent that learnt its applier reads whole packs, then the stack rolled back: the next backlog goes whole and is refused. */
async function refusedAfterRollback(files: number): Promise<Setup> {
  const current = start(false);
  writeFileSync(join(current.src.path, "first.txt"), "applied by the updated applier");
  await current.agent.start();
  await current.agent.drain(SET);
  await current.agent.checkTarget(SET);
  current.transport.deploy(true);
  writeFiles(current.src.path, files);
  return current;
}

/** Enough small files (half text, half random) that the set's backlog travels in packs. */
function writeFiles(root: string, count: number, from = 0): void {
  mkdirSync(join(root, "d"), { recursive: true });
  for (let i = from; i < from + count; i++) writeFileSync(join(root, "d", `f${i}.dat`), i % 2 === 0 ? `line ${i} of a text file\n`.repeat(250) : randomBytes(6 * 1024));
}

/** The packs of the messages sent so far: whole when they carry an encoding. */
function packs(transport: Stack): { whole: number; perFile: number } {
  const sent = transport.bodies.map((body) => parseMessage(body) as WireMessage).filter((message) => message.pack !== undefined);
  const whole = sent.filter((message) => message.pack?.encoding !== undefined).length;
  return { whole, perFile: sent.length - whole };
}

describe("an agent newer than its applier", () => {
  it("sends per-file packs to an applier that does not announce whole packs, and every one is applied", async () => {
    const { src, store, transport, agent } = start(true);
    writeFiles(src.path, 150);
    await agent.start();
    await agent.drain(SET);
    expect(packs(transport)).toMatchObject({ whole: 0 });
    expect(packs(transport).perFile).toBeGreaterThan(0);
    expect(transport.outcomes.every((o) => o.kind === "applied")).toBe(true);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));

    // Its status, read by the agent's poll, still says nothing of whole packs: the next backlog goes per file too.
    await agent.checkTarget(SET);
    writeFiles(src.path, 150, 150);
    await agent.scan(SET);
    await agent.drain(SET);
    expect(packs(transport).whole).toBe(0);
    expect(transport.outcomes.every((o) => o.kind === "applied")).toBe(true);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
  });

  it("compresses packs whole once the set's status says its applier reads them (the stack was updated)", async () => {
    const { src, store, transport, agent } = start(true);
    writeFileSync(join(src.path, "first.txt"), "applied by the older applier");
    await agent.start();
    await agent.drain(SET);
    transport.deploy(false);
    // The updated applier stamps what it reads on the status it writes; the agent's next poll reads it.
    writeFileSync(join(src.path, "second.txt"), "applied by the updated applier");
    await agent.scan(SET);
    await agent.drain(SET);
    expect((await readSetStatus(store, SET)).accepts).toContain("whole-packs");
    await agent.checkTarget(SET);
    writeFiles(src.path, 150);
    await agent.scan(SET);
    await agent.drain(SET);
    expect(packs(transport).whole).toBeGreaterThan(0);
    expect(packs(transport).perFile).toBe(0);
    expect(transport.outcomes.every((o) => o.kind === "applied")).toBe(true);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
  });

  it("announces what the applier reads when asked at start (the local cloud does), and on its first status write otherwise", async () => {
    const store = new OlderApplierStore();
    store.older = false;
    const now = new Date("2026-01-02T03:04:05.000Z");
    await new OlderApplier({ store, log: () => {}, now: () => now }).announce();
    expect(await readApplierAnnouncement(store)).toEqual({ accepts: ["whole-packs"], at: now.toISOString() });
    await store.delete(APPLIER_ANNOUNCEMENT_KEY);
    const applier = new OlderApplier({ store, log: () => {} });
    expect(await applier.applyMessage(signedIncoming("m0", SET, messageBody(SET, [putRecord(1, "x.txt", "x")])))).toMatchObject({ kind: "applied" });
    expect(await readApplierAnnouncement(store)).toMatchObject({ accepts: ["whole-packs"] });
    expect((await readSetStatus(store, SET)).accepts).toEqual(["whole-packs"]);
  });

  it("compresses a new set's packs whole from its first message when the stack announced it", async () => {
    const store = new OlderApplierStore();
    store.older = false;
    // Another set's message: the applier announces what it reads when it first writes a status.
    const other = new OlderApplier({ store, log: () => {} });
    expect(await other.applyMessage(signedIncoming("m0", "other", messageBody("other", [putRecord(1, "x.txt", "x")])))).toMatchObject({ kind: "applied" });
    expect(await readApplierAnnouncement(store)).toMatchObject({ accepts: ["whole-packs"] });
    const { src, transport, agent } = start(false, store);
    writeFiles(src.path, 150);
    await agent.start();
    await agent.drain(SET);
    expect(packs(transport)).toMatchObject({ perFile: 0 });
    expect(packs(transport).whole).toBeGreaterThan(0);
    expect(transport.outcomes.every((o) => o.kind === "applied")).toBe(true);
  });

  it("sends per-file packs again when the stack is rolled back, names the refused message in status and sends its files again", async () => {
    const { src, store, transport, journal, agent, recoveries } = start(false);
    writeFileSync(join(src.path, "first.txt"), "applied by the updated applier");
    await agent.start();
    await agent.drain(SET);
    await agent.checkTarget(SET);
    expect(await store.get(APPLIER_ANNOUNCEMENT_KEY)).toBeDefined();

    // Rolled back: the older applier refuses the whole packs the agent learnt it could send.
    transport.deploy(true);
    writeFiles(src.path, 150);
    await agent.scan(SET);
    await agent.drain(SET);
    expect(packs(transport).whole).toBeGreaterThan(0);
    expect(transport.outcomes.some((o) => o.kind === "rejected")).toBe(true);
    const refused = await readSetStatus(store, SET);
    const counters = journal.sets.counters(SET);
    const problems = findProblems({ set: SET, counters, generation: journal.sets.generation(SET), target: { status: refused }, now: new Date() });
    expect(problems).toContainEqual({ kind: "rejected-message", message: expect.stringMatching(/carried a pack compressed as a whole, which the set's applier, older than this agent, does not read .* per-file packs now and recovers the set/) });

    // The agent's next look at the target: packs go per file, and the set is recovered behind a resync.
    const before = packs(transport);
    await agent.checkTarget(SET);
    expect(recoveries).toHaveLength(1);
    await Promise.all(recoveries);
    await agent.drain(SET);
    expect(packs(transport).whole).toBe(before.whole);
    expect(packs(transport).perFile).toBeGreaterThan(before.perFile);
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "in-sync", lastSeq: journal.sets.counters(SET).nextSeq - 1 });
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
    // The resync applied after the refusal sent everything again: status no longer counts it against the set.
    expect(findProblems({ set: SET, counters: journal.sets.counters(SET), generation: journal.sets.generation(SET), target: { status }, now: new Date() })).toEqual([]);
  });

  it("recovers a whole pack refused as the last message sent when the agent restarts: the new process never saw the stack change", async () => {
    const current = await refusedAfterRollback(400);
    await current.agent.scan(SET);
    await current.agent.drain(SET);
    // One message, refused, and none after it: the target shows no gap, only that it applied less than was sent.
    expect(current.transport.outcomes.filter((o) => o.kind === "rejected")).toHaveLength(1);
    const refused = await readSetStatus(current.store, SET);
    expect(refused.state).toBe("in-sync");
    expect(refused.lastSeq).toBeLessThan(current.journal.sets.counters(SET).sentSeq);
    expect(await problems(current)).toContainEqual({ kind: "rejected-message", message: expect.stringMatching(/carried a pack compressed as a whole/) });

    const agent = await restart(current);
    await agent.checkTarget(SET);
    expect(current.recoveries).toHaveLength(1);
    await Promise.all(current.recoveries);
    await agent.drain(SET);
    expect(await readSetStatus(current.store, SET)).toMatchObject({ state: "in-sync", lastSeq: current.journal.sets.counters(SET).nextSeq - 1 });
    expect(await pictureOfTarget(current.store, SET)).toEqual(await pictureOfSource(current.src.path));
    expect(await problems(current)).toEqual([]);
    // Looked at again: the refusal was recovered from once.
    await agent.checkTarget(SET);
    expect(current.recoveries).toHaveLength(1);

    // Later changes in flight as the agent starts again: the target applied less than was sent, but it moved past the
    // refusal since, so nothing is recovered and status does not name it.
    current.transport.queued = [];
    writeFileSync(join(current.src.path, "later.txt"), "sent after the recovery");
    await agent.scan(SET);
    await agent.drain(SET);
    const again = await restart(current);
    const inFlight = await readSetStatus(current.store, SET);
    expect(inFlight.state).toBe("in-sync");
    expect(inFlight.lastSeq).toBeLessThan(current.journal.sets.counters(SET).sentSeq);
    await again.checkTarget(SET);
    expect(current.recoveries).toHaveLength(1);
    expect((await problems(current)).map((p) => p.kind)).not.toContain("rejected-message");
    await current.transport.deliver();
    expect(await pictureOfTarget(current.store, SET)).toEqual(await pictureOfSource(current.src.path));
    expect(await problems(current)).toEqual([]);
  });

  it("recovers a whole pack refused after the agent saw the stack change, the message being on the wire then", async () => {
    const current = await refusedAfterRollback(0);
    const { agent, transport, store, src, recoveries } = current;
    // A folder: a message without a pack, applied by the older applier, whose status says nothing of whole packs.
    await agent.scan(SET);
    await agent.drain(SET);
    expect(transport.outcomes.every((o) => o.kind === "applied")).toBe(true);
    let open = (): void => undefined;
    transport.gate = new Promise((resolve) => (open = resolve));
    writeFiles(src.path, 400);
    await agent.scan(SET);
    const draining = agent.drain(SET);
    while (transport.waiting === 0) await new Promise((resolve) => setImmediate(resolve));
    // The agent learns the change while the message, packed whole before it, is on the wire: nothing refused yet.
    await agent.checkTarget(SET);
    expect(recoveries).toHaveLength(0);
    transport.gate = undefined;
    open();
    await draining;
    expect(transport.outcomes.filter((o) => o.kind === "rejected")).toHaveLength(1);
    expect(await readSetStatus(store, SET)).toMatchObject({ state: "in-sync" });

    await agent.checkTarget(SET);
    expect(recoveries).toHaveLength(1);
    await Promise.all(recoveries);
    await agent.drain(SET);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
    expect(await problems(current)).toEqual([]);
  });

  it("begins one recovery when a refused whole pack was followed by another message (the target out of sync)", async () => {
    const current = await refusedAfterRollback(400);
    const { agent, transport, store, src, recoveries } = current;
    await agent.scan(SET);
    await agent.drain(SET);
    writeFileSync(join(src.path, "after.txt"), "sent after the refused message");
    await agent.scan(SET);
    await agent.drain(SET);
    expect(transport.outcomes.filter((o) => o.kind === "rejected")).toHaveLength(1);
    expect(await readSetStatus(store, SET)).toMatchObject({ state: "out-of-sync" });

    await agent.checkTarget(SET);
    await agent.checkTarget(SET);
    expect(recoveries).toHaveLength(1);
    await Promise.all(recoveries);
    await agent.drain(SET);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
    expect(await problems(current)).toEqual([]);
  });
});

describe("the stack's announcement, as the agent reads it", () => {
  const announcement = { accepts: ["whole-packs"], at: "2026-01-02T03:04:05.000Z" };

  it("reads it once when found", async () => {
    let reads = 0;
    const cached = cachedAnnouncement(async () => {
      reads += 1;
      return announcement;
    });
    expect(await cached()).toEqual(announcement);
    expect(await cached()).toEqual(announcement);
    expect(reads).toBe(1);
  });

  it("reads it again after a while when a read failed or found none, not at every status read", async () => {
    let clock = 0;
    const answers: (() => Promise<typeof announcement | undefined>)[] = [
      () => Promise.reject(new Error("AccessDenied: the host role may not read state/applier.json")),
      async () => undefined,
      async () => announcement,
    ];
    let reads = 0;
    const cached = cachedAnnouncement(() => (answers[reads++] ?? (async () => announcement))(), { retryMs: 1000, now: () => clock });
    expect(await cached()).toBeUndefined();
    clock = 999;
    expect(await cached()).toBeUndefined();
    expect(reads).toBe(1);
    clock = 1000;
    expect(await cached()).toBeUndefined();
    expect(reads).toBe(2);
    clock = 2000;
    expect(await cached()).toEqual(announcement);
    clock = 10_000;
    expect(await cached()).toEqual(announcement);
    expect(reads).toBe(3);
  });
});
