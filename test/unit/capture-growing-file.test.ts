// A file copied into a set while the agent runs (a 2.5 GiB image written by
// dd) is small when its capture stats it and large by the time it is read:
// the capture was told only the first stat's size, so the set's capture did
// not name the file as held and `tidemark status` said "in sync" for the 90 s
// the reads took, with the file and the small changes queued behind it in no
// record. And the file, small at that first stat, was read whole up to 5
// times while it kept growing, where a large file is read at most twice.

import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { capture } from "../../agent/capture.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "big";
/** Past the size from which a file changing while read is read at most twice (capture.ts LARGE_READ_BYTES). */
const LARGE_BYTES = 64 * 1024 * 1024 + 1;
let h: Harness;

afterEach(async () => {
  await h.close();
});

it("tells the caller the size before every read, so a file grown large while read is named as large", async () => {
  h = agentHarness(SET);
  const path = join(h.src.path, "copy.bin");
  writeFileSync(path, "x");
  const told: number[] = [];
  const result = await capture(h.journal, { name: SET, root: h.src.path, exclude: [] }, "copy.bin", {
    beforeRead: (size) => {
      told.push(size);
      // The copy goes on between the capture's stat and its read.
      if (told.length === 1) writeFileSync(path, Buffer.alloc(256 * 1024, 7));
    },
  });
  expect(told).toEqual([1, 256 * 1024]);
  expect(result.changes).toMatchObject([{ op: "put", path: "copy.bin", size: 256 * 1024 }]);
});

it("reads a file that grew large while it kept growing at most twice, as a large file", async () => {
  h = agentHarness(SET);
  const path = join(h.src.path, "copy.img");
  writeFileSync(path, "x");
  const told: number[] = [];
  const changing: string[] = [];
  const result = await capture(h.journal, { name: SET, root: h.src.path, exclude: [] }, "copy.img", {
    beforeRead: (size) => {
      told.push(size);
      // Sparse: grows past the large size at once, then by a MiB before every later read.
      truncateSync(path, Math.max(size, LARGE_BYTES) + 1024 * 1024);
    },
    onChangingWhileRead: (changed) => changing.push(changed),
  });
  expect(told).toEqual([1, LARGE_BYTES + 1024 * 1024]);
  expect(changing).toEqual(["copy.img"]);
  // What the last read's stat gave: the MiB the copy added after it is not followed (the next capture takes it).
  expect(result.changes).toMatchObject([{ op: "put", path: "copy.img", size: LARGE_BYTES + 1024 * 1024 }]);
});
