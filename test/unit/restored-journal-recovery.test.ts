// A journal restored from an older copy of the state folder: the target is
// ahead of it (it got later versions from the journal that was lost), so the
// agent begins a new generation and recovers. Its index is not empty, only
// old: the comparison with the target once ran only for an empty index, so
// every file changed since the copy was sent again, whole. Now a file the
// index knows stale is compared with the target too, and sent only when the
// target does not hold it.

import { randomBytes } from "node:crypto";
import { cpSync, mkdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { recoverSet } from "../../agent/operations.ts";
import { targetFileReader } from "../../agent/recovery-baseline.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "app";
const BIG_FILE_BYTES = 4 * 1024 * 1024;
/** Files modified moments before the comparison hashes them are never taken as held: dated in the past. */
const HOUR_AGO = new Date(Date.now() - 3_600_000);
const TWO_HOURS_AGO = new Date(Date.now() - 7_200_000);
let h: Harness;
let backup: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  await h.close();
  backup?.remove();
});

function write(path: string, body: Uint8Array, at: Date): void {
  writeFileSync(path, body);
  utimesSync(path, at, at);
}

it("compares the files an older journal knows stale with the target, and sends none the target holds", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  const src = h.src.path;
  mkdirSync(join(src, "lib"));
  for (let i = 0; i < 20; i++) write(join(src, "lib", `m${i}.js`), randomBytes(2000), TWO_HOURS_AGO);
  write(join(src, "big.bin"), randomBytes(BIG_FILE_BYTES), TWO_HOURS_AGO);
  await h.agent.start();
  await h.agent.drain(SET);

  // The copy of the state folder, taken now.
  await h.shutdown();
  backup = tempDir("tidemark-state-copy-");
  cpSync(h.state.path, backup.path, { recursive: true });

  // Later changes the target gets from the journal that is then lost.
  h.restart({ targetStatus: (set) => readSetStatus(store, set) });
  for (let i = 0; i < 10; i++) write(join(src, "lib", `m${i}.js`), randomBytes(2500), HOUR_AGO);
  write(join(src, "big.bin"), randomBytes(BIG_FILE_BYTES), HOUR_AGO);
  await h.agent.start();
  await h.agent.drain(SET);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src));
  const generation = (await readSetStatus(store, SET)).generation;

  // The state folder restored from the copy; one more change while the agent was down.
  await h.shutdown();
  rmSync(h.state.path, { recursive: true, force: true });
  cpSync(backup.path, h.state.path, { recursive: true });
  const after = randomBytes(1200);
  write(join(src, "lib", "m15.js"), after, HOUR_AGO);

  let recovering: Promise<void> | undefined;
  h.restart({
    targetStatus: (set) => readSetStatus(store, set),
    targetFile: targetFileReader(store),
    recover: (set, reason) => {
      recovering = recoverSet(h.operations(), set, reason, "diff", "report");
      return recovering;
    },
  });
  const before = h.transport.bodies.reduce((sum, body) => sum + Buffer.byteLength(body), 0) + h.transport.stagedBytes;
  await h.agent.start();
  expect(recovering).toBeDefined();
  await recovering;
  await h.agent.drain(SET);
  const sent = h.transport.bodies.reduce((sum, body) => sum + Buffer.byteLength(body), 0) + h.transport.stagedBytes - before;

  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src));
  const status = await readSetStatus(store, SET);
  expect(status).toMatchObject({ state: "in-sync", generation: h.journal.sets.generation(SET).id });
  expect(status.generation).not.toBe(generation);
  // The one file changed since: not the ten the target holds, nor the large one.
  expect(sent).toBeLessThan(BIG_FILE_BYTES / 4);
});
