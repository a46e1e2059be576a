// The comparison with the target after a lost journal (recovery-baseline.ts) against a target that does not answer
// (a black-holed endpoint: each HEAD waits out a connect timeout) stops after MAX_FAILED_LOOKUPS_IN_A_ROW failed
// lookups in a row rather than hold the set's lane for hours; the files not compared are not counted as differing.

import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { recoverSet } from "../../agent/operations.ts";
import { MAX_FAILED_LOOKUPS_IN_A_ROW, seedIndexFromTarget, TargetUnreachableError, type TargetFileLookup } from "../../agent/recovery-baseline.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "app";
/** Lookups at once (recovery-baseline.ts COMPARE_CONCURRENCY): those under way when it stops still finish. */
const CONCURRENCY = 16;
let h: Harness;

afterEach(async () => {
  await h.close();
});

function writeFiles(root: string, count: number): string[] {
  const names = Array.from({ length: count }, (_, i) => `f${String(i).padStart(4, "0")}.txt`);
  for (const name of names) writeFileSync(join(root, name), `content of ${name}`);
  return names;
}

it("stops after the limit of failed lookups in a row, naming why, and looks up nothing more", async () => {
  h = agentHarness(SET);
  writeFiles(h.src.path, 300);
  let calls = 0;
  const lookup: TargetFileLookup = async () => {
    calls += 1;
    throw new Error("connect ETIMEDOUT 10.0.0.1:443");
  };
  const comparison = seedIndexFromTarget(h.journal, { name: SET, root: h.src.path, exclude: [] }, lookup);
  await expect(comparison).rejects.toThrow(TargetUnreachableError);
  await expect(comparison).rejects.toThrow(/comparing set "app" with the target stopped: \d+ lookups of its objects failed in a row \(last: Error: connect ETIMEDOUT/);
  // Each file is asked twice; only those under way when the limit is reached are asked after it.
  expect(calls).toBeLessThanOrEqual(2 * (MAX_FAILED_LOOKUPS_IN_A_ROW + CONCURRENCY));
  expect(h.journal.index.entry(SET, "f0000.txt")).toBeUndefined();
});

it("goes on through failures that are not in a row: each costs its own file only", async () => {
  h = agentHarness(SET);
  const names = writeFiles(h.src.path, 120);
  const failing = new Set(names.filter((_, i) => i % 3 === 0));
  const lookup: TargetFileLookup = async (_set, path) => {
    if (failing.has(path)) throw new Error("503 Service Unavailable");
    const bytes = readFileSync(join(h.src.path, path));
    // Another size on the target: the file differs, found without reading it.
    return { size: bytes.length + 1, sha256: createHash("sha256").update(bytes).digest("hex"), mode: 0o644, mtimeNs: "0" };
  };
  const report = await seedIndexFromTarget(h.journal, { name: SET, root: h.src.path, exclude: [] }, lookup);
  expect(report).toMatchObject({ files: 120, differ: 120, unreadable: 40 });
});

it("fails the recovery after a lost journal as a whole and releases the set's lane: the first scan goes on", async () => {
  const store = new MemoryStore();
  h = agentHarness(SET, { targetStatus: (set) => readSetStatus(store, set) }, { store });
  writeFiles(h.src.path, 100);
  await h.agent.start();
  await h.agent.drain(SET);

  // The state folder is lost; the agent that starts over finds every lookup of the target failing.
  await h.shutdown();
  rmSync(h.state.path, { recursive: true, force: true });
  mkdirSync(h.state.path);
  let calls = 0;
  const recoveries: Promise<void>[] = [];
  h.restart({
    targetStatus: (set) => readSetStatus(store, set),
    targetFile: async () => {
      calls += 1;
      throw new Error("connect ETIMEDOUT 10.0.0.1:443");
    },
    recover: (set, reason, _owed, resyncPending, compare) => {
      const run = recoverSet(h.operations(), set, reason, "diff", "report", resyncPending, compare);
      recoveries.push(run);
      return run;
    },
  });
  // The start goes on, and the set's first scan behind the comparison journals the files it could not compare.
  await h.agent.start();
  expect(h.journal.index.entryCount(SET)).toBe(100);
  // The recovery that awaited the comparison failed (it stays owed until a run of it succeeds, after its backoff).
  await expect(recoveries[0]).rejects.toThrow(TargetUnreachableError);
  expect(calls).toBeLessThanOrEqual(2 * (MAX_FAILED_LOOKUPS_IN_A_ROW + CONCURRENCY));
});
