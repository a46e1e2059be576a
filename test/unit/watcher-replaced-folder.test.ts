// A folder moved away and another made at its name (`mv pkg pkg-old && mkdir
// pkg`, npm's and build tools' way of swapping a folder), or removed and made
// again: the new folder's events name only what it holds, so the index kept
// the old folder's entries under the name, the target kept those files, and
// status said in sync until the next barrier scan (a marker, the 15-minute
// rescan). The watcher reports the replaced folder, and its capture scans it
// whole, deleting what is no longer there.

import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { agentHarness, type Harness } from "../support/harness.ts";
import { eventually } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "app";
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it.each([
  ["moved away", (src: string) => renameSync(join(src, "pkg"), join(src, "pkg-old"))],
  ["removed", (src: string) => rmSync(join(src, "pkg"), { recursive: true })],
])("a folder %s and made again at its name: the old folder's entries leave the index and the target without a scan", async (_how, away) => {
  const harness = agentHarness(SET, { monitorEnabled: true });
  h = harness;
  const src = harness.src.path;
  mkdirSync(join(src, "pkg/lib"), { recursive: true });
  writeFileSync(join(src, "pkg/package.json"), "{}");
  writeFileSync(join(src, "pkg/lib/index.js"), "old");
  await harness.agent.start();
  await harness.agent.drain(SET);

  away(src);
  mkdirSync(join(src, "pkg"));
  writeFileSync(join(src, "pkg/index.js"), "new");

  // Converges without a scan: the target holds exactly the source (the moved folder's files at their new names).
  await eventually(
    async () => {
      await harness.agent.drain(SET);
      expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(src));
    },
    10_000,
    50,
  );
  expect(harness.journal.index.entry(SET, "pkg/package.json")).toBeUndefined();
});
