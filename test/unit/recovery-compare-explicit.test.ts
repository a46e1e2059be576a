// A journal the target is ahead of (lost) is compared with the target (recovery-baseline.ts) before the recovery's
// verification: the recovery is handed the comparison and awaits it, rather than trusting the set's lane to have
// run it first.

import { mkdirSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { recoverSet } from "../../agent/operations.ts";
import { targetFileReader } from "../../agent/recovery-baseline.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "app";
const HOUR_AGO = new Date(Date.now() - 3_600_000);
let h: Harness;

afterEach(async () => {
  await h.close();
});

it("hands the recovery after a lost journal the comparison, which it awaits before its verification", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  for (let i = 0; i < 20; i++) {
    writeFileSync(join(h.src.path, `f${i}.txt`), `file ${i}`);
    utimesSync(join(h.src.path, `f${i}.txt`), HOUR_AGO, HOUR_AGO);
  }
  await h.agent.start();
  await h.agent.drain(SET);
  await h.shutdown();
  rmSync(h.state.path, { recursive: true, force: true });
  mkdirSync(h.state.path);

  const seen: { indexed: number; verifies: number }[] = [];
  let recovering: Promise<void> | undefined;
  let handed = false;
  h.restart({
    targetStatus: (set) => readSetStatus(store, set),
    targetFile: targetFileReader(store),
    recover: (set, reason, _owed, _resyncPending, compare) => {
      handed = compare !== undefined;
      const compared = async () => {
        await compare?.();
        // What the verification would otherwise journal whole is indexed as held by now, and no verification is journaled yet.
        seen.push({ indexed: h.journal.index.entryCount(SET), verifies: h.journal.pending(SET, 0, 10_000).filter((r) => r.op === "verify").length });
      };
      recovering = recoverSet(h.operations(), set, reason, "diff", "report", false, compared);
      return recovering;
    },
  });
  await h.agent.start();
  await recovering;
  await h.agent.drain(SET);
  expect(handed).toBe(true);
  expect(seen).toEqual([{ indexed: 20, verifies: 0 }]);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(h.src.path));
});
