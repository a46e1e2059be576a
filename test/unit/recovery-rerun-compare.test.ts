// A recovery after a lost journal stopped part way (the agent stopped while it
// compared the source with the target): the next start runs the recovery
// again, and it used to repeat no comparison, so the scan sent every file not
// compared yet whole. Now the run again compares what the index does not know
// yet, and sends only what the target lacks.

import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { recoverSet } from "../../agent/operations.ts";
import { targetFileReader, type TargetFileLookup } from "../../agent/recovery-baseline.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "app";
const BIG_FILE_BYTES = 4 * 1024 * 1024;
/** Files modified moments before the comparison hashes them are never taken as held: dated in the past. */
const HOUR_AGO = new Date(Date.now() - 3_600_000);
let h: Harness;

afterEach(async () => {
  await h.close();
});

function restartWithRecovery(store: MemoryStore, lookup: TargetFileLookup): () => Promise<void> {
  let recovering: Promise<void> | undefined;
  h.restart({
    targetStatus: (set) => readSetStatus(store, set),
    targetFile: lookup,
    recover: (set, reason) => {
      recovering = recoverSet(h.operations(), set, reason, "diff", "report");
      return recovering;
    },
  });
  return async () => {
    expect(recovering).toBeDefined();
    await recovering;
  };
}

const sentSoFar = () => h.transport.bodies.reduce((sum, body) => sum + Buffer.byteLength(body), 0) + h.transport.stagedBytes;

it("compares again, when a recovery stopped part way runs again, what the first run had not compared", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  const src = h.src.path;
  mkdirSync(join(src, "lib"));
  for (let i = 0; i < 30; i++) {
    writeFileSync(join(src, "lib", `m${i}.js`), randomBytes(3000));
    utimesSync(join(src, "lib", `m${i}.js`), HOUR_AGO, HOUR_AGO);
  }
  writeFileSync(join(src, "big.bin"), randomBytes(BIG_FILE_BYTES));
  utimesSync(join(src, "big.bin"), HOUR_AGO, HOUR_AGO);
  await h.agent.start();
  await h.agent.drain(SET);

  // The state folder is lost; the agent that starts over stops while it compares, after the first lookup.
  await h.shutdown();
  rmSync(h.state.path, { recursive: true, force: true });
  mkdirSync(h.state.path);
  const stopping = new AbortController();
  const reader = targetFileReader(store);
  h.restart({
    targetStatus: (set) => readSetStatus(store, set),
    targetFile: (set, path) => {
      stopping.abort();
      return reader(set, path);
    },
    // The recovery's first steps (recoverSet's), then the process dies: its verification never runs.
    recover: async (set, reason) => {
      h.journal.atomically(() => h.journal.recoveries.begin(set, { mode: "diff", orphans: "report", reason }));
      await h.agent.restartChain(set, reason);
    },
  });
  await expect(h.agent.start(stopping.signal)).rejects.toThrow(/stopped while/);
  expect(h.journal.recoveries.of(SET)).toBeDefined();
  expect(h.journal.index.entryCount(SET)).toBeLessThan(10);
  await h.shutdown();

  // The next start runs the recovery again: what the first run did not compare is compared now.
  const looked: string[] = [];
  const before = sentSoFar();
  const secondRun = restartWithRecovery(store, (set, path) => {
    looked.push(path);
    return reader(set, path);
  });
  await h.agent.start();
  await secondRun();
  await h.agent.drain(SET);
  const sent = sentSoFar() - before;

  expect(looked).toContain("big.bin");
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src));
  expect(await readSetStatus(store, SET)).toMatchObject({ state: "in-sync", generation: h.journal.sets.generation(SET).id });
  expect(h.journal.recoveries.of(SET)).toBeUndefined();
  // Records without content, not the tree again.
  expect(sent).toBeLessThan(BIG_FILE_BYTES / 4);
});
