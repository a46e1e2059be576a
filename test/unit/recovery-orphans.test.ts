// A journal lost while the agent was stopped, and a file deleted meanwhile:
// with the default config (orphans "report") the recovery's verification only
// reported the file, so the target kept a file the source had deleted, every
// later snapshot failed its digest, and a restore brought the file back. A
// recovery applies such deletions (or moves them aside when the config says so).

import { readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { restoreAt } from "../../agent/restore-at.ts";
import { recoverSet, type MirrorMode, type OperationDeps } from "../../agent/operations.ts";
import type { OrphanPolicy } from "../../contract/layout.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "docs";
let h: Harness | undefined;
afterEach(() => h?.close());

async function journalLostAndFileDeleted(mode: MirrorMode, orphans: OrphanPolicy): Promise<{ h: Harness; store: MemoryStore; before: number }> {
  const store = new MemoryStore();
  let deps: OperationDeps | undefined;
  const harness = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set), recover: (set, reason) => (deps ? recoverSet(deps, set, reason, mode, orphans) : Promise.resolve()) }, { store });
  h = harness;
  deps = harness.operations();
  writeFileSync(join(harness.src.path, "gone-while-stopped.txt"), "deleted while no journal saw it");
  writeFileSync(join(harness.src.path, "stays.txt"), "stays");
  await harness.agent.start();
  await harness.agent.drain(SET);

  const before = Date.now();
  await harness.shutdown();
  for (const file of ["journal.db", "journal.db-wal", "journal.db-shm"]) rmSync(join(harness.state.path, file), { force: true });
  rmSync(join(harness.src.path, "gone-while-stopped.txt"));
  harness.restart();
  deps = harness.operations();
  await harness.agent.start();
  return { h: harness, store, before };
}

/** The names of the files the set held at `moment` (ms), restored from its history. */
async function restoredNames(store: MemoryStore, moment: number): Promise<string[]> {
  const out = tempDir("tidemark-recovery-at-");
  try {
    await restoreAt(store, SET, moment, join(out.path, "tree"));
    return readdirSync(join(out.path, "tree")).sort();
  } finally {
    out.remove();
  }
}

it.each(["diff", "full", "checksum"] as const)("a %s recovery with orphans \"report\" (the default) deletes on the target what was deleted while no journal saw it", async (mode) => {
  const { h, store, before } = await journalLostAndFileDeleted(mode, "report");
  await expect.poll(async () => (await pictureOfTarget(store, SET))["gone-while-stopped.txt"], { interval: 5, timeout: 10_000 }).toBeUndefined();
  await h.agent.drain(SET);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(h.src.path));
  // The deletion is in the set's history: the moment before the recovery still restores the file.
  expect(await restoredNames(store, before)).toEqual(["gone-while-stopped.txt", "stays.txt"]);
  expect(await restoredNames(store, Date.now())).toEqual(["stays.txt"]);
});

it("a recovery with orphans \"move-aside\" moves it aside instead", async () => {
  const { store } = await journalLostAndFileDeleted("diff", "move-aside");
  const movedAside = async () => {
    const names: (string | undefined)[] = [];
    for await (const object of store.list(`orphans/${SET}/`)) names.push(object.key.split("/").at(-1));
    return names;
  };
  await expect.poll(movedAside, { interval: 5, timeout: 10_000 }).toEqual(["gone-while-stopped.txt"]);
  expect(await store.head(`data/${SET}/gone-while-stopped.txt`)).toBeUndefined();
});
