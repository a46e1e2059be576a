// What README's "What is kept, and what is not" says of owners: a file's
// uid/gid do not travel (the target's object and the snapshot's manifest
// carry none), its mode does, set-uid bit included, and a restore makes every
// entry the restoring user's: root's when run as root. So the restore drops a
// file's set-uid bit (a tool set-uid to nobody would come back set-uid root)
// and says so; a folder keeps its set-gid bit.

import { chmodSync, chownSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { restoreSnapshot } from "../../agent/restore.ts";
import { dataKey } from "../../contract/layout.ts";
import { DEFAULT_TASK_TIMEOUT_SECONDS } from "../../contract/tasks.ts";
import { listSnapshots, readManifest } from "../../lambdas/tasks/snapshots.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

const SET = "own";
const NOBODY = 65534;
let h: Harness;
let out: ReturnType<typeof tempDir>;

beforeEach(() => {
  h = agentHarness(SET);
  out = tempDir("tidemark-restore-");
});
afterEach(async () => {
  await h.close();
  out.remove();
});

it.runIf(process.geteuid?.() === 0)("replicates modes (set-uid too) and no owners: restored as root, everything is root's, and the set-uid file is not set-uid root", async () => {
  const src = h.src.path;
  mkdirSync(join(src, "app"));
  writeFileSync(join(src, "app", "tool"), "#!/bin/sh\n");
  // In this order: a chown clears the set-uid bit.
  chownSync(join(src, "app", "tool"), NOBODY, NOBODY);
  chmodSync(join(src, "app", "tool"), 0o4755);
  chownSync(join(src, "app"), NOBODY, NOBODY);
  chmodSync(join(src, "app"), 0o2775);
  await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS } });
  await h.agent.drain(SET);
  const summary = (await listSnapshots(h.store, SET)).at(-1);
  if (!summary) throw new Error("no snapshot was taken");

  const live = await h.store.head(dataKey(SET, "app/tool"));
  expect(Object.keys(live?.meta ?? {}).filter((key) => /uid|gid|owner|group/i.test(key))).toEqual([]);
  const manifest = await readManifest(h.store, summary);
  expect(manifest.find((e) => e.path === "app/tool")?.mode).toBe(0o4755);
  expect(Object.keys(manifest.find((e) => e.path === "app/tool") ?? {}).filter((key) => /uid|gid|owner|group/i.test(key))).toEqual([]);

  const to = join(out.path, "r");
  const result = await restoreSnapshot(h.store, summary, to);
  expect(result.failures).toEqual([]);
  const tool = statSync(join(to, "app", "tool"));
  expect(tool.mode & 0o7777).toBe(0o755);
  expect([tool.uid, tool.gid]).toEqual([0, 0]);
  expect(result.setIdDropped).toMatchObject({ count: 1, paths: ["app/tool"] });
  const app = statSync(join(to, "app"));
  expect([app.uid, app.mode & 0o7777]).toEqual([0, 0o2775]);
});
