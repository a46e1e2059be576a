// `tidemark restore --at` and `tidemark timeline` as an operator runs them,
// against the local cloud (emulated S3 without versioning, the same applier).

import { existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let agent: RunningAgent | undefined;
const work = tempDir();
const src = join(work.path, "src");
let config: string;

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(join(src, "sub", "empty"), { recursive: true });
  for (let i = 0; i < 10; i++) writeFileSync(join(src, "sub", `f${i}.txt`), `version one of file ${i}\n`);
  config = cloud.writeConfig(work.path, [{ name: "web", path: "src" }], { orphans: "delete" });
  agent = await startAgent(loadConfig(config), silentLogger);
  await eventually(async () => expect(await pictureOfTarget(cloud.store, "web")).toEqual(await pictureOfSource(src)));
});

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

it("restores the folder as it was before a ransomware pass, even after the source host pruned, repaired and mirrored, and shows the timeline", async () => {
  const marker = await tidemark(["task", "web", "--wait", "--json", "--config", config]);
  expect(marker.code).toBe(0);
  const before = await pictureOfSource(src, { microseconds: true });
  // Everything before this moment was journaled (the target holds it); everything after is journaled later.
  const moment = new Date().toISOString();
  await new Promise((resolve) => setTimeout(resolve, 5));
  for (let i = 0; i < 10; i++) writeFileSync(join(src, "sub", `f${i}.txt`), `encrypted ${i}`);
  rmSync(join(src, "sub", "f3.txt"));
  await eventually(async () => expect(await pictureOfTarget(cloud.store, "web")).toEqual(await pictureOfSource(src)));
  // What the compromised host can still ask for: none of it may cost the moment before the pass.
  expect((await tidemark(["prune", "web", "--keep", "0", "--json", "--config", config])).code).toBe(0);
  expect((await tidemark(["verify", "web", "--repair", "--json", "--config", config])).code).toBe(0);
  expect((await tidemark(["mirror", "web", "--mode", "full", "--json", "--config", config])).code).toBe(0);
  const snapshots = await tidemark(["snapshots", "web", "--json", "--config", config]);
  expect(JSON.stringify(JSON.parse(snapshots.stdout))).toContain(JSON.parse(marker.stdout).id);

  const out = join(work.path, "restored");
  const restore = await tidemark(["restore", "web", "--at", moment, "--to", out, "--json", "--config", config]);
  expect(restore.stderr).toBe("");
  expect(restore.code).toBe(0);
  expect(JSON.parse(restore.stdout)).toMatchObject({ set: "web", at: moment, kind: "files", files: 10 });
  expect(await pictureOfSource(out, { microseconds: true })).toEqual(before);

  const timeline = await tidemark(["timeline", "web", "--json", "--config", config]);
  expect(timeline.code).toBe(0);
  const range = JSON.parse(timeline.stdout) as { from: number; to: number; changes: number };
  expect(range.from).toBeLessThan(Date.parse(moment));
  expect(range.to).toBeGreaterThan(Date.parse(moment));
  const human = await tidemark(["timeline", "web", "--config", config]);
  expect(human.stdout).toMatch(/^set web: any moment from \S+ to \S+ restores/);
});

it("refuses a moment it cannot read, and --snapshot with --at, writing nothing", async () => {
  const bad = await tidemark(["restore", "web", "--at", "yesterday", "--to", join(work.path, "nope"), "--config", config]);
  expect(bad.code).toBe(2);
  expect(bad.stderr).toBe('tidemark: "yesterday" is not a moment: use ISO 8601 (2026-11-30T10:15:02.250Z, or local time without a zone) or a span ago (90s, 15m, 2h, 3d)\n');
  const both = await tidemark(["restore", "web", "--at", "15m", "--snapshot", "latest", "--to", join(work.path, "nope"), "--config", config]);
  expect(both.code).toBe(2);
  expect(both.stderr).toContain("not both");
  const early = await tidemark(["restore", "web", "--at", "2001-01-01T00:00:00Z", "--to", join(work.path, "nope"), "--config", config]);
  expect(early.code).toBe(1);
  expect(early.stderr).toMatch(/before the point-in-time history of set "web" begins/);
  expect(existsSync(join(work.path, "nope"))).toBe(false);
});
