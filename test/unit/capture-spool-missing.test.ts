// The agent's spool folder (large files' content between capture and send)
// removed by a cleaner while the agent runs. An ENOENT from it once read as
// "the file vanished" and journaled a delete of a file the source still held;
// then it failed every large-file capture until a restart. Now the capture
// recreates the folder, and records whose spooled content went with it are
// named as not replicated, then captured again and sent whole.

import { randomBytes } from "node:crypto";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { capture } from "../../agent/capture.ts";
import { skipLostSpools } from "../../agent/spool-folder.ts";
import { readTaskResult } from "../../lambdas/target/readers.ts";
import { listSnapshots } from "../../lambdas/tasks/snapshots.ts";
import { markerWithSpooledList } from "../support/spooled-marker.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "app";
/** Past the inline limit: captured through the spool. */
const SPOOLED_BYTES = 2 * 1024 * 1024;
let h: Harness;

afterEach(async () => {
  await h.close();
});

it("recreates a deleted spool folder when a large file is captured, and journals no delete", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  // grown: read whole (its old size is below any delta); changed: the same size, read as a delta of the indexed content.
  writeFileSync(join(src, "grown.bin"), "small at first");
  writeFileSync(join(src, "changed.bin"), randomBytes(SPOOLED_BYTES));
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  const spec = { name: SET, root: src, exclude: [] };

  writeFileSync(join(src, "grown.bin"), randomBytes(SPOOLED_BYTES));
  writeFileSync(join(src, "changed.bin"), randomBytes(SPOOLED_BYTES));
  rmSync(h.journal.spoolDir, { recursive: true, force: true });
  await capture(h.journal, spec, "grown.bin");
  expect(existsSync(h.journal.spoolDir)).toBe(true);
  rmSync(h.journal.spoolDir, { recursive: true, force: true });
  await h.agent.scan(SET);
  expect(h.journal.pending(SET, 0, 100).filter((record) => record.op === "delete")).toEqual([]);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(src));
  expect(h.journal.skipped(SET)).toEqual([]);
});

it("names the unsent records whose spooled content was deleted as not replicated, invalidating their index entries", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  writeFileSync(join(src, "a.bin"), randomBytes(SPOOLED_BYTES));
  writeFileSync(join(src, "b.bin"), randomBytes(SPOOLED_BYTES));
  writeFileSync(join(src, "small.txt"), "inline");
  await h.agent.scan(SET);
  rmSync(h.journal.spoolDir, { recursive: true, force: true });

  const skipped = await skipLostSpools(h.journal, SET);
  expect(skipped.flatMap((record) => record.paths).sort()).toEqual(["a.bin", "b.bin"]);
  const named = h.journal.skipped(SET);
  expect(named.map((path) => path.path)).toEqual(["a.bin", "b.bin"]);
  for (const path of named) expect(path.reason).toContain("spooled content was deleted");
  expect(h.journal.index.entry(SET, "a.bin")).toMatchObject({ sha256: null });
  // Checked again: nothing more is lost.
  expect(await skipLostSpools(h.journal, SET)).toEqual([]);
});

it("captures again and sends whole what lost its spooled content, so the target matches the source", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  writeFileSync(join(src, "a.bin"), randomBytes(SPOOLED_BYTES));
  writeFileSync(join(src, "b.bin"), randomBytes(SPOOLED_BYTES));
  writeFileSync(join(src, "small.txt"), "inline");
  await h.agent.scan(SET);
  rmSync(h.journal.spoolDir, { recursive: true, force: true });

  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(src));
  // Replicated again: status names nothing.
  expect(h.journal.skipped(SET)).toEqual([]);
  expect(existsSync(h.journal.spoolDir)).toBe(true);
});

it("sends a marker whose spooled digest list was deleted without the list: the snapshot is still checked against its digest", async () => {
  h = agentHarness(SET);
  writeFileSync(join(h.src.path, "a.txt"), "a");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  // As a large set's list is journaled: in a spool file, which the cleaner then deletes with the folder.
  const marker = await markerWithSpooledList(h, SET, "deleted-list", false);
  rmSync(h.journal.spoolDir, { recursive: true, force: true });

  await h.agent.drain(SET);
  const result = await readTaskResult(h.store, SET, marker.id);
  expect(result?.status).toBe("succeeded");
  const summary = (await listSnapshots(h.store, SET)).at(-1);
  expect(summary?.digest?.status).toBe("matched");
  expect(h.journal.skipped(SET)).toEqual([]);
});
