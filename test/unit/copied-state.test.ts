// A state folder copied while its host keeps running (a cloned VM, `cp -a` of
// the state folder): the copy carries the journal's numbering, and without a
// key of its own its messages would be taken by seq, first come, beside the
// original's. With the key bound to its place (owner-place.ts) the copy is a
// new host: the target refuses what it sends, its agent holds its sends, and
// the original's stream goes on.

import { cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { acceptRoot } from "../../agent/accept-root.ts";
import { Agent } from "../../agent/agent.ts";
import { Journal } from "../../agent/journal.ts";
import { silentLogger } from "../../agent/log.ts";
import { SendsHeldError } from "../../agent/owner-hold.ts";
import { loadOrCreateOwnerKey, type LoadedOwnerKey } from "../../agent/owner-key.ts";
import { SigningTransport } from "../../agent/transport/signing.ts";
import { readOwner } from "../../lambdas/target/owner.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { DEDUPLICATION_WINDOW_MS } from "../support/memory-transport.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "www";

let h: Harness;
let work: ReturnType<typeof tempDir>;
let machine: string;
/** The original host's key, from its state folder as `tidemark run` loads it. */
let original: LoadedOwnerKey;
/** The copy: its own source tree and the original's state folder copied, as a cloned VM has. */
let copySrc: string;
let copyState: string;
let now: number;

beforeEach(async () => {
  work = tempDir("tidemark-copied-state-");
  machine = join(work.path, "machine-id");
  writeFileSync(machine, "3d1219c7c4c5404aaa1f6d2a48adfda4\n");
  h = agentHarness(SET);
  now = Date.now();
  h.transport.now = () => now;
  original = loadOrCreateOwnerKey(h.state.path, { log: silentLogger, machineIdFiles: [machine] });
  h.transport.key = original.key;
  writeFileSync(join(h.src.path, "index.html"), "<h1>original</h1>");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect((await readOwner(h.store, SET))?.keyId).toBe(original.key.keyId);

  // The copy is made of a stopped agent's folder; the original then runs on.
  await h.shutdown();
  copySrc = join(work.path, "copy-src");
  copyState = join(work.path, "copy-state");
  cpSync(h.src.path, copySrc, { recursive: true, preserveTimestamps: true });
  cpSync(h.state.path, copyState, { recursive: true, preserveTimestamps: true });
  h.restart();
  expect(loadOrCreateOwnerKey(h.state.path, { log: silentLogger, machineIdFiles: [machine] }).key.keyId).toBe(original.key.keyId);
});

afterEach(async () => {
  await h.close();
  work.remove();
});

/** The copy's agent over its journal, signing with the key its state folder gives it, through the same queue. */
async function copyAgent(owner: boolean): Promise<{ agent: Agent; journal: Journal; keyId: string }> {
  const key = loadOrCreateOwnerKey(copyState, { log: silentLogger, machineIdFiles: [machine] }).key;
  const journal = Journal.open(copyState);
  const spec = { name: SET, root: copySrc, exclude: [] };
  // A cloned VM's root is the folder its journal knew (same path, same inode); this copy's is another folder.
  await acceptRoot(journal, spec);
  const agent = new Agent({
    sets: [spec],
    journal,
    transport: new SigningTransport(h.transport, key),
    monitorEnabled: false,
    // As `tidemark run` wires it (runtime.ts).
    ...(owner ? { owner: { hostKeyId: key.keyId, lookup: (set: string) => readOwner(h.store, set) } } : {}),
  });
  return { agent, journal, keyId: key.keyId };
}

it("refuses the messages of a copied state folder's host, and the original host keeps replicating", async () => {
  const copy = await copyAgent(false);
  try {
    expect(copy.keyId).not.toBe(original.key.keyId);
    // The copy's changes take the seqs the original will use next: first at the queue, each is refused, not applied.
    writeFileSync(join(copySrc, "index.html"), "<h1>the copy</h1>");
    writeFileSync(join(copySrc, "copy-only.html"), "<p>copy</p>");
    await copy.agent.scan(SET);
    await copy.agent.drain(SET);
    const refused = h.transport.outcomes.filter((outcome) => outcome.kind === "rejected");
    expect(refused.length).toBeGreaterThan(0);
    expect((await readSetStatus(h.store, SET)).refused?.last).toMatchObject({ keyId: copy.keyId, reason: expect.stringMatching(/belongs to key/) });
  } finally {
    await copy.agent.stop();
    copy.journal.close();
  }
  // Past the queue's deduplication window of the copy's messages (the copy's agent holds its sends, as the next test shows).
  now += DEDUPLICATION_WINDOW_MS;
  writeFileSync(join(h.src.path, "later.html"), "<p>later</p>");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  expect(await readSetStatus(h.store, SET)).toMatchObject({ state: "in-sync" });
});

it("holds the sends of a copied state folder's agent (the owner record names the original's key) while the original replicates", async () => {
  const copy = await copyAgent(true);
  try {
    writeFileSync(join(copySrc, "index.html"), "<h1>the copy</h1>");
    await copy.agent.start();
    await copy.agent.scan(SET);
    const delivered = h.transport.delivered.length;
    await expect(copy.agent.drain(SET)).rejects.toThrow(SendsHeldError);
    expect(h.transport.delivered).toHaveLength(delivered);
  } finally {
    await copy.agent.stop();
    copy.journal.close();
  }
  writeFileSync(join(h.src.path, "later.html"), "<p>later</p>");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});
