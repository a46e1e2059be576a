// The set's root swapped under a running agent (an unmount leaves the empty
// mount point), then gone at the agent's start: the local cloud's live mirror
// keeps every file, `tidemark status` names the hold and exits 1, a marker is
// refused, and the set converges by itself when the root comes back, or
// after `tidemark accept-root` for a new folder.

import { mkdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "data";
const work = tempDir();
let cloud: TestCloud | undefined;
let running: RunningAgent | undefined;

afterAll(async () => {
  await running?.stop();
  await cloud?.stop();
  work.remove();
});

interface StatusJson {
  sets: { set: string; healthy: boolean; inSync: boolean; rootHold: { state: string; root: string; expected: string; found: string; since: string } | null; problems: { kind: string; message: string }[] }[];
}

async function status(config: string): Promise<{ code: number | null; report: StatusJson["sets"][number] | undefined }> {
  const result = await tidemark(["status", "--json", "--config", config]);
  return { code: result.code, report: (JSON.parse(result.stdout) as StatusJson).sets[0] };
}

it("holds the set while its root is swapped or gone, and converges once it is back or accepted", async () => {
  cloud = await startTestCloud();
  const target = cloud;
  const root = join(work.path, "mnt");
  const away = join(work.path, "away");
  mkdirSync(join(root, "docs"), { recursive: true });
  writeFileSync(join(root, "a.txt"), "alpha");
  writeFileSync(join(root, "docs", "b.txt"), "bravo");
  const config = target.writeConfig(work.path, [{ name: SET, path: "mnt" }]);
  running = await startAgent(loadConfig(config), silentLogger);
  await eventually(async () => expect(await pictureOfTarget(target.store, SET)).toEqual(await pictureOfSource(root)));
  const before = await pictureOfTarget(target.store, SET);

  // An unmount: the disk's folder leaves, an empty mount point stays. The watcher reports every entry gone.
  renameSync(root, away);
  mkdirSync(root);
  await eventually(async () => expect((await status(config)).report?.rootHold?.state).toBe("root-changed"));
  const held = await status(config);
  expect(held.code).toBe(1);
  expect(held.report?.healthy).toBe(false);
  expect(held.report?.rootHold?.root).toBe(root);
  expect(held.report?.problems[0]?.message).toMatch(/held since .*the root .*mnt is another folder.*accept-root data/);
  const text = await tidemark(["status", "--config", config]);
  expect(text.stdout).toContain("HELD (root-changed");
  const agent = running.agent;
  await expect(agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } })).rejects.toThrow(/held \(root-changed\).*no marker is journaled/);
  expect(await pictureOfTarget(target.store, SET)).toEqual(before);

  // The disk mounted again: the set resumes by itself, watched again.
  rmSync(root, { recursive: true });
  renameSync(away, root);
  await eventually(async () => expect((await status(config)).report?.rootHold).toBeNull());
  writeFileSync(join(root, "docs", "c.txt"), "charlie");
  await eventually(async () => expect(await pictureOfTarget(target.store, SET)).toEqual(await pictureOfSource(root)));
  expect(Object.keys(await pictureOfTarget(target.store, SET))).toEqual(expect.arrayContaining(Object.keys(before)));

  // The agent restarts while the root is gone: it starts (the set held), not refusing the config.
  await running.stop();
  running = undefined;
  renameSync(root, away);
  running = await startAgent(loadConfig(config), silentLogger);
  await eventually(async () => expect((await status(config)).report?.rootHold?.state).toBe("root-missing"));
  const replicated = await pictureOfTarget(target.store, SET);
  expect(Object.keys(replicated)).toContain("docs/c.txt");

  // A new disk with other files is accepted: the next scan journals the real differences, deletes included.
  mkdirSync(root);
  writeFileSync(join(root, "new.txt"), "new disk");
  const accepted = await tidemark(["accept-root", SET, "--json", "--config", config]);
  expect(accepted.code).toBe(0);
  expect(JSON.parse(accepted.stdout)).toMatchObject({ set: SET, root, previous: { state: expect.stringMatching(/root-missing|root-changed/) } });
  await eventually(async () => expect(await pictureOfTarget(target.store, SET)).toEqual(await pictureOfSource(root)));
  await eventually(async () => expect((await status(config)).report?.inSync).toBe(true));
}, 240_000);
