// A journal that never held a set: the set was added to the config of an
// agent already running, or a command that would have started an agent for
// the duration (`tidemark task` with the queue down) made the journal and
// failed. Status said "in sync" for a folder nothing of which was ever
// replicated; it names it (no-journal) until an agent runs the set. An agent
// registers each set at its start, so an empty folder it replicates is in
// sync.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, expect, it, onTestFinished } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { standInAgent } from "../support/agent-stand-in.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tidemark } from "../support/cli.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;
let h: Harness | undefined;

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});

afterEach(async () => {
  await h?.close();
  h = undefined;
});

afterAll(async () => {
  await cloud?.stop();
  work?.remove();
});

interface StatusJson {
  sets: { set: string; inSync: boolean; problems: { kind: string; message: string }[] }[];
}

it("names a set the journal never held, not in sync, until an agent registers it", async () => {
  mkdirSync(join(work.path, "docs"));
  writeFileSync(join(work.path, "docs/a.txt"), "never sent");
  const config = cloud.writeConfig(work.path, [{ name: "docs", path: "docs" }]);
  // The journal exists (made by a command that then failed), and holds nothing of the set.
  const stateDir = join(work.path, "state");
  Journal.open(stateDir).close();
  // An agent runs on the state folder (the set added to its config after its start): no agent-stopped, only the set.
  const agent = standInAgent(stateDir);
  onTestFinished(() => agent.release());

  const json = await tidemark(["status", "--json", "--config", config]);
  expect(json.code).toBe(1);
  const report = (JSON.parse(json.stdout) as StatusJson).sets[0];
  expect(report?.inSync).toBe(false);
  expect(report?.problems).toEqual([{ kind: "no-journal", message: expect.stringContaining("holds nothing of the set: no agent has run it with this state folder yet") as string }]);

  // What an agent's start does: the set is known, and (the target holding nothing of it either) in sync.
  const journal = Journal.open(stateDir);
  journal.sets.register("docs");
  journal.close();
  const after = await tidemark(["status", "--json", "--config", config]);
  expect((JSON.parse(after.stdout) as StatusJson).sets[0]?.problems).toEqual([]);
});

it("registers each set at the agent's start, also an empty folder that journals nothing", async () => {
  const harness = agentHarness("empty");
  h = harness;
  expect(harness.journal.sets.known("empty")).toBe(false);
  await harness.agent.start();
  expect(harness.journal.sets.counters("empty").nextSeq).toBe(1);
  expect(harness.journal.sets.known("empty")).toBe(true);
});
