// A set can hold entries the agent does not replicate (a name the target
// cannot carry, a change it refused for good): `tidemark status` names them,
// but a snapshot taken meanwhile lacked them and said "succeeded, digest
// matched, verified", its restore exited 0 and its drill passed (the digest is
// over what the agent replicates). The marker now carries them: the snapshot
// records itself as incomplete, its task fails naming them, status names the
// newest snapshot incomplete, restore and drill count them as not restored,
// and `restore --delete` never removes what the point lacks.

import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { notReplicatedWarning } from "../../agent/commands/task.ts";
import { runDrill } from "../../agent/drill.ts";
import { restoreSnapshot, RestoreError } from "../../agent/restore.ts";
import { boundNotReplicated, leftOutCount, MAX_CHANGING_WHILE_READ_BYTES, snapshotIdFor, TaskFieldsSchema } from "../../contract/tasks.ts";
import { parseMessage } from "../../contract/wire.ts";
import { listSnapshots, readSetStatus, readSnapshot, readTaskResult } from "../../lambdas/target/index.ts";
import { notReplicatedBySource, onlySourceLimited } from "../../lambdas/tasks/snapshot-checks.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

const SET = "app";
let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("marks a snapshot incomplete when the set holds an entry it does not replicate: the task fails, status and restore name it", async () => {
  const harness = agentHarness(SET);
  h = harness;
  writeFileSync(join(harness.src.path, "ok.txt"), "kept");
  // A backslash: no name the target can carry (contract/paths.ts).
  writeFileSync(join(harness.src.path, "back\\slash.txt"), "never replicated");
  const queued = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  expect(queued.notReplicated).toEqual([{ path: "back\\slash.txt", problem: expect.stringMatching(/^it is not replicated \(.*\)$/) }]);
  await harness.agent.drain(SET);

  const result = await readTaskResult(harness.store, SET, queued.id);
  expect(result).toMatchObject({ status: "failed", outputs: { notReplicated: 1 } });
  expect(result?.error).toMatch(/is incomplete: it lacks 1 entries the source held at the marker that the agent does not replicate: 1 whose names the target cannot hold .*tidemark status app/);
  const summary = await readSnapshot(harness.store, SET, snapshotIdFor(queued.id));
  // The name is no set path: counted, not carried to the target.
  expect(summary.notReplicated).toEqual({ paths: [], count: 1 });
  expect(leftOutCount(summary)).toBe(1);
  expect((await readSetStatus(harness.store, SET))?.lastSnapshot).toMatchObject({ id: summary.id, notReplicated: 1 });

  const to = tempDir("tidemark-partial-");
  try {
    const restored = await restoreSnapshot(harness.store, summary, to.path);
    // Not silently complete: one entry counted as not restored (the CLI exits 3 for it).
    expect(restored).toMatchObject({ files: 1, leftOutUnnamed: 1 });
    // --delete could remove the unnamed entry's copy in the folder: refused.
    await expect(restoreSnapshot(harness.store, summary, to.path, { delete: true })).rejects.toThrow(RestoreError);
  } finally {
    to.remove();
  }
  const drill = await runDrill(harness.store, SET);
  expect(drill.report.passed).toBe(false);
  expect(drill.report.problemCount).toBe(1);

  // Excluded (or renamed): the next snapshot is complete again.
  rmSync(join(harness.src.path, "back\\slash.txt"));
  const clean = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  expect(clean.notReplicated).toBeUndefined();
  await harness.agent.drain(SET);
  expect((await readTaskResult(harness.store, SET, clean.id))?.status).toBe("succeeded");
  const after = await readSnapshot(harness.store, SET, snapshotIdFor(clean.id));
  expect(after.notReplicated).toBeUndefined();
  expect((await readSetStatus(harness.store, SET))?.lastSnapshot?.notReplicated).toBeUndefined();
});

it("names a lacking entry the target can hold as not restored, and --delete leaves its folder whole", async () => {
  const harness = agentHarness(SET);
  h = harness;
  writeFileSync(join(harness.src.path, "ok.txt"), "kept");
  const queued = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  await harness.agent.drain(SET);
  const summary = await readSnapshot(harness.store, SET, snapshotIdFor(queued.id));
  // As a snapshot whose marker named a folder the target refused: its copy in the restore folder is not "extra".
  const partial = { ...summary, notReplicated: { paths: [{ path: "data", problem: "it is not replicated (too long)" }], count: 1 } };
  const to = tempDir("tidemark-partial-");
  try {
    mkdirSync(join(to.path, "data"));
    writeFileSync(join(to.path, "data", "inner.bin"), "the only copy");
    writeFileSync(join(to.path, "stray.txt"), "extra");
    const restored = await restoreSnapshot(harness.store, partial, to.path, { delete: true, force: true });
    expect(restored.failures).toEqual([{ path: "data", reason: `left out of snapshot ${summary.id} when it was taken: the source held it, and it is not replicated (too long)` }]);
    expect(restored.deleted).toEqual(["stray.txt"]);
    expect(existsSync(join(to.path, "data", "inner.bin"))).toBe(true);
  } finally {
    to.remove();
  }
});

it("prunes by retention behind a snapshot that lacks only what the source does not replicate", async () => {
  let now = Date.parse("2026-01-01T00:00:00Z");
  const harness = agentHarness(SET, {}, { tasks: { retentionDays: 1 }, history: { days: 0 }, now: () => now });
  h = harness;
  writeFileSync(join(harness.src.path, "ok.txt"), "kept");
  const old = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  await harness.agent.drain(SET);
  expect((await readTaskResult(harness.store, SET, old.id))?.status).toBe("succeeded");
  now += 3 * 86_400_000;
  writeFileSync(join(harness.src.path, "back\\slash.txt"), "never replicated");
  const partial = await harness.agent.insertMarker(SET, { fields: TaskFieldsSchema.parse({}) });
  await harness.agent.drain(SET);
  const summary = await readSnapshot(harness.store, SET, snapshotIdFor(partial.id));
  expect((await readTaskResult(harness.store, SET, partial.id))?.status).toBe("failed");
  expect(onlySourceLimited(summary)).toBe(true);
  expect(onlySourceLimited({ ...summary, notReplicated: undefined })).toBe(false);
  expect((await listSnapshots(harness.store, SET)).map((s) => s.id)).toEqual([snapshotIdFor(partial.id)]);
});

it("bounds what a source host sent, whatever it sent: names no set path and control characters in problems", () => {
  const kept = notReplicatedBySource({
    paths: [
      { path: "db/app.db", problem: "refused\u001b[2J" },
      { path: "\u001b[31mred", problem: "x" },
      { path: "a".repeat(2000), problem: "long" },
    ],
    count: 1,
  });
  expect(kept).toEqual({ paths: [{ path: "db/app.db", problem: "refused?[2J" }], count: 3 });
  const many = Array.from({ length: 150 }, (_, i) => ({ path: `d/${String(i).padStart(3, "0")}`, problem: "p".repeat(400) }));
  const bounded = boundNotReplicated(many);
  expect(bounded?.count).toBe(150);
  expect(bounded?.paths.map((e) => e.path + e.problem).join("").length).toBeLessThanOrEqual(MAX_CHANGING_WHILE_READ_BYTES);
  expect(boundNotReplicated([])).toBeUndefined();
  expect(notReplicatedBySource(undefined)).toBeUndefined();
  // A count no set could hold is taken at a bound; a right-to-left override in a problem is no longer one.
  expect(notReplicatedBySource({ paths: [{ path: "a", problem: "x\u202ey" }], count: 1e18 })).toEqual({ paths: [{ path: "a", problem: "x?y" }], count: 1_000_000_000 });
});

it("warns when the marker is queued, naming the first ten", () => {
  const entries = Array.from({ length: 12 }, (_, i) => ({ path: `bad\\${i}`, problem: "it is not replicated (backslash)" }));
  expect(notReplicatedWarning(entries)).toMatch(/^the set holds 12 entries it does not replicate: the snapshot lacks them and its task fails .*: bad\\\\0 \(it is not replicated \(backslash\)\), .* and 2 more/);
});

it("parses a marker with the list, and refuses one naming more than 100", () => {
  const task = { seq: 7, at: 1, op: "task", id: "t1", action: "snapshot", timeoutSeconds: 300 };
  const body = (record: object) => JSON.stringify({ v: 1, set: SET, records: [record] });
  expect(parseMessage(body({ ...task, notReplicated: { paths: [{ path: "a", problem: "b" }], count: 2 } }))).toMatchObject({ records: [{ notReplicated: { count: 2 } }] });
  const many = Array.from({ length: 101 }, () => ({ path: "a", problem: "b" }));
  expect(() => parseMessage(body({ ...task, notReplicated: { paths: many, count: 101 } }))).toThrow(/notReplicated/);
});
