// Only the source file going away is a delete. An ENOENT from anything else
// (the agent's spool folder removed by a cleaner while the agent runs) once
// read as "the file vanished" and journaled a delete of a file the source
// still holds: the mirror lost it. It is a failed capture instead, named and
// tried again, and the file stays on the target.

import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { capture, CaptureReadError } from "../../agent/capture.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfTarget } from "../support/tree.ts";

const SET = "app";
/** Past the inline limit: captured through the spool. */
const SPOOLED_BYTES = 2 * 1024 * 1024;
let h: Harness;

afterEach(async () => {
  await h.close();
});

it("journals no delete of a file still on the source when its capture fails with an ENOENT from the missing spool folder", async () => {
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
  for (const path of ["grown.bin", "changed.bin"]) {
    await expect(capture(h.journal, spec, path)).rejects.toThrow(CaptureReadError);
    expect(h.journal.index.entry(SET, path)).toMatchObject({ kind: "file" });
  }
  // The whole-set scan fails (status names it; it is retried), and journals no delete.
  await expect(h.agent.scan(SET)).rejects.toThrow(CaptureReadError);
  expect(h.journal.pending(SET, 0, 100).filter((record) => record.op === "delete")).toEqual([]);
  await h.agent.drain(SET);
  expect(Object.keys(await pictureOfTarget(h.store, SET)).sort()).toEqual(["changed.bin", "grown.bin"]);
});
