// A marker's barrier reading a large file (gigabytes, or one read again while
// it keeps changing) showed "scanning 2/2 files  0 B journaled" for a minute
// and more: nothing said what it was doing. The scan's progress names the
// long read under way, and drops it once the read ends.

import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { READING_NAMED_BYTES, barrierScan, type ScanReport } from "../../agent/scan.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

let h: Harness;
afterEach(async () => {
  await h.close();
});

it("names a large file's read in the scan's progress while it runs, and not a small one's", async () => {
  h = agentHarness("data");
  writeFileSync(join(h.src.path, "small.txt"), "small");
  // Sparse: large to the scan, cheap to make.
  const big = join(h.src.path, "big.img");
  writeFileSync(big, "");
  truncateSync(big, READING_NAMED_BYTES);
  const seen: (ScanReport["reading"] | undefined)[] = [];
  const report = await barrierScan(h.journal, { name: "data", root: h.src.path, exclude: [] }, { onProgress: (r) => seen.push(r.reading && { ...r.reading }) });
  expect(seen).toContainEqual({ path: "big.img", size: READING_NAMED_BYTES });
  expect(seen.some((reading) => reading?.path === "small.txt")).toBe(false);
  // Once read, the report no longer names it: the last progress (and the result) say nothing is being read.
  expect(seen.at(-1)).toBeUndefined();
  expect(report.reading).toBeUndefined();
  expect(report.changes).toBe(2);
});
