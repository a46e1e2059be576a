// `tidemark status` names a stopped agent: with no agent on the state folder
// nothing journals or sends the source's changes, so no set is "in sync" or
// "catching up", whatever its backlog; it says since when, when the agent
// recorded its stop, and exits non-zero.

import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { tidemark } from "../support/cli.ts";
import { standInAgent } from "../support/agent-stand-in.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});

afterAll(async () => {
  await cloud?.stop();
  work?.remove();
});

interface StatusJson {
  sets: { set: string; inSync: boolean; healthy: boolean; problems: { kind: string; message: string }[] }[];
}

async function status(config: string) {
  const json = await tidemark(["status", "--json", "--config", config]);
  const human = await tidemark(["status", "--config", config]);
  return { code: json.code, humanCode: human.code, sets: (JSON.parse(json.stdout) as StatusJson).sets, text: human.stdout };
}

it("is in sync while an agent holds the state folder, and names the agent stopped, since when, for every set once it released it", async () => {
  mkdirSync(join(work.path, "a"));
  mkdirSync(join(work.path, "b"));
  const config = cloud.writeConfig(work.path, [
    { name: "a", path: "a" },
    { name: "b", path: "b" },
  ]);
  const stateDir = join(work.path, "state");
  // An agent ran both sets (its start registers them).
  const journal = Journal.open(stateDir);
  journal.sets.register("a");
  journal.sets.register("b");
  journal.close();

  const agent = standInAgent(stateDir);
  const running = await status(config);
  expect(running.code).toBe(0);
  expect(running.sets.map((s) => [s.set, s.inSync, s.problems])).toEqual([
    ["a", true, []],
    ["b", true, []],
  ]);
  expect(running.text).not.toContain("agent-stopped");

  agent.release();
  const stopped = await status(config);
  expect(stopped.code).toBe(1);
  expect(stopped.humanCode).toBe(1);
  for (const set of stopped.sets) {
    expect(set).toMatchObject({ inSync: false, healthy: false });
    expect(set.problems).toEqual([{ kind: "agent-stopped", message: expect.stringMatching(/^no agent is running: changes on the source since \d{4}-\d\d-\d\dT[\d:.]+Z \(when the agent stopped\) are not being replicated; start it with `tidemark run` or the service$/) as string }]);
  }
  expect(stopped.text).toContain("NOT IN SYNC (agent-stopped)");
  expect(stopped.text).toMatch(/a: no agent is running: changes on the source since /);
  expect(stopped.text).toMatch(/b: no agent is running: changes on the source since /);
});

it("names a killed agent (its lock left behind, its process gone) stopped without a time it never recorded", async () => {
  const dir = tempDir();
  try {
    mkdirSync(join(dir.path, "src"));
    const config = cloud.writeConfig(dir.path, [{ name: "db", path: "src" }]);
    const stateDir = join(dir.path, "state");
    const journal = Journal.open(stateDir);
    journal.sets.register("db");
    journal.close();
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    writeFileSync(join(stateDir, "tidemark.lock"), `${JSON.stringify({ pid: gone, host: hostname(), command: "tidemark run", since: "2026-11-30T00:00:00.000Z" })}\n`);

    const stopped = await status(config);
    expect(stopped.code).toBe(1);
    expect(stopped.sets[0]?.problems).toEqual([{ kind: "agent-stopped", message: "no agent is running: changes on the source since the agent stopped are not being replicated; start it with `tidemark run` or the service" }]);
  } finally {
    dir.remove();
  }
});
