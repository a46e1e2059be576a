// The journal deleted while `tidemark run` was stopped (issue 15), through the
// whole pipeline: the restarted agent begins a new generation, the target
// resyncs instead of dropping its records as duplicates, `tidemark status`
// says what is wrong until it is repaired, and exits non-zero meanwhile.

import { cpSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import { spawnTidemark, tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;
let child: ChildProcess | undefined;

function startAgentProcess(config: string): Promise<ChildProcess> {
  const proc = spawnTidemark(["run", "--config", config]);
  return new Promise((resolve, reject) => {
    let err = "";
    proc.stderr?.on("data", (chunk: Buffer) => {
      err += chunk.toString();
      if (err.includes("replicating")) resolve(proc);
    });
    proc.on("exit", (code) => reject(new Error(`agent exited with ${code} before replicating: ${err}`)));
  });
}

async function stopAgent(): Promise<void> {
  const proc = child;
  child = undefined;
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill("SIGTERM");
  await exited;
}

interface StatusJson {
  sets: { set: string; inSync: boolean; healthy: boolean; problems: { kind: string; message: string }[]; target: { generation?: string; lastGenerationChange?: { reason: string } } }[];
}

async function status(config: string): Promise<{ code: number | null; json: StatusJson }> {
  const out = await tidemark(["status", "--json", "--config", config]);
  return { code: out.code, json: JSON.parse(out.stdout) as StatusJson };
}

/** Polls status until it exits 0 with the set in sync and healthy (and `also`), and returns that status's set: a status process costs seconds on a loaded machine. */
async function inSync(config: string, also: Partial<StatusJson["sets"][number]>, timeoutMs?: number): Promise<StatusJson["sets"][number]> {
  let set: StatusJson["sets"][number] | undefined;
  await eventually(async () => {
    const now = await status(config);
    expect(now.code).toBe(0);
    expect(now.json.sets[0]).toMatchObject({ inSync: true, healthy: true, ...also });
    set = now.json.sets[0];
  }, timeoutMs);
  if (!set) throw new Error("no set in status");
  return set;
}

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});

afterAll(async () => {
  await stopAgent();
  await cloud?.stop();
  work?.remove();
});

it("a journal deleted while the agent was stopped: a new generation, every later change and deletion reaches the target, and status never claims sync in between", async () => {
  const src = join(work.path, "src");
  mkdirSync(join(src, "d"), { recursive: true });
  for (let i = 0; i < 40; i++) writeFileSync(join(src, "d", `f${i}.txt`), `file ${i}`);
  // The default orphans policy ("report"): the recovery still deletes f3.txt, deleted while no journal saw it.
  const config = cloud.writeConfig(work.path, [{ name: "gen", path: "src" }]);
  const matches = async () => expect(await pictureOfTarget(cloud.store, "gen")).toEqual(await pictureOfSource(src));

  child = await startAgentProcess(config);
  await eventually(matches);
  const before = (await inSync(config, { problems: [] })).target.generation;
  expect(before).toBeTruthy();

  await stopAgent();
  // Only the journal goes; the rest of the state folder stays.
  for (const file of ["journal.db", "journal.db-wal", "journal.db-shm"]) rmSync(join(work.path, "state", file), { force: true });
  rmSync(join(src, "d", "f3.txt"));
  writeFileSync(join(src, "while-stopped.txt"), "written while the agent was stopped");

  const stale = await status(config);
  expect(stale.code).toBe(1);
  expect(stale.json.sets[0]).toMatchObject({ inSync: false, healthy: false });
  // The agent is stopped too: nothing replicates the source's changes meanwhile.
  expect(stale.json.sets[0]?.problems.map((p) => p.kind)).toEqual(["agent-stopped", "other-generation"]);
  const text = await tidemark(["status", "--config", config]);
  expect(text.code).toBe(1);
  expect(text.stdout).toMatch(/NOT IN SYNC \(agent-stopped, other-generation\)/);
  expect(text.stdout).toMatch(/gen: the target is on generation \w+ at seq \d+, this journal is new at seq 0: the journal was lost or replaced/);

  child = await startAgentProcess(config);
  writeFileSync(join(src, "after-restart.txt"), "written after the restart");
  rmSync(join(src, "d", "f7.txt"));
  await eventually(matches, 90_000);
  const after = (await inSync(config, {}, 60_000)).target;
  expect(after?.generation).not.toBe(before);
  expect(after?.lastGenerationChange?.reason).toMatch(/the journal was lost or replaced/);
  // The next test starts its own agent in `child`: this one would be left running past the suite.
  await stopAgent();
});

it("a state folder restored from an older copy: the agent finds the target ahead of its journal, begins a new generation, and later changes and deletions reach the target", async () => {
  const dir = join(work.path, "restored");
  const src = join(dir, "src");
  mkdirSync(src, { recursive: true });
  for (let i = 0; i < 10; i++) writeFileSync(join(src, `f${i}.txt`), `file ${i}`);
  const config = cloud.writeConfig(dir, [{ name: "restored", path: "src" }]);
  const matches = async () => expect(await pictureOfTarget(cloud.store, "restored")).toEqual(await pictureOfSource(src));

  child = await startAgentProcess(config);
  await eventually(matches);
  await stopAgent();
  const backup = join(work.path, "restored-backup");
  cpSync(join(dir, "state"), backup, { recursive: true });

  child = await startAgentProcess(config);
  for (let i = 0; i < 10; i++) writeFileSync(join(src, `f${i}.txt`), `file ${i}, second version`);
  rmSync(join(src, "f1.txt"));
  writeFileSync(join(src, "after-backup.txt"), "made after the backup");
  await eventually(matches);
  await stopAgent();

  rmSync(join(dir, "state"), { recursive: true, force: true });
  cpSync(backup, join(dir, "state"), { recursive: true });
  const stale = await status(config);
  expect(stale.code).toBe(1);
  expect(stale.json.sets[0]?.problems.map((p) => p.kind)).toEqual(["agent-stopped", "target-ahead"]);

  child = await startAgentProcess(config);
  rmSync(join(src, "f2.txt"));
  rmSync(join(src, "after-backup.txt"));
  writeFileSync(join(src, "f3.txt"), "changed after the restore");
  writeFileSync(join(src, "after-restore.txt"), "made after the restore");
  await eventually(matches, 90_000);
  expect((await inSync(config, {}, 60_000)).target.lastGenerationChange?.reason).toMatch(/restored from an older copy/);
});
