// Sockets, FIFOs and devices have no content to replicate. A file or folder
// replaced by one (a FIFO renamed over a file) is gone from the source: the
// target must drop it too, not keep the old file (restores and snapshots
// brought it back, and a verification compared nothing, as the index still
// held the file).

import { execFileSync } from "node:child_process";
import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "srv";
let h: Harness | undefined;
afterEach(() => h?.close());

it("a file or a folder replaced by a FIFO is deleted on the target", async () => {
  h = agentHarness(SET);
  const src = h.src.path;
  writeFileSync(join(src, "app.log"), "the old log");
  mkdirSync(join(src, "run"));
  writeFileSync(join(src, "run", "pid"), "42");
  writeFileSync(join(src, "keep.txt"), "stays");
  await h.agent.start();
  await h.agent.drain(SET);
  expect(await h.store.head("data/srv/app.log")).toBeDefined();
  expect(await h.store.head("data/srv/run/pid")).toBeDefined();

  execFileSync("mkfifo", [join(src, ".app.log.fifo")]);
  renameSync(join(src, ".app.log.fifo"), join(src, "app.log"));
  rmSync(join(src, "run"), { recursive: true });
  execFileSync("mkfifo", [join(src, "run")]);
  await h.agent.scan(SET);
  await h.agent.drain(SET);

  expect(await h.store.head("data/srv/app.log")).toBeUndefined();
  expect(await h.store.head("data/srv/run/pid")).toBeUndefined();
  expect(await h.store.head("data/srv/run/")).toBeUndefined();
  expect(await h.store.head("data/srv/keep.txt")).toBeDefined();
  expect(h.journal.index.entryCount(SET)).toBe(1);
});
