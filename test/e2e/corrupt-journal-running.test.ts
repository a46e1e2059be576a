// A journal found corrupt while the agent runs (the runtime, as `tidemark run`
// and `tidemark local --source` start it): the agent reports it as failed
// (its command exits 1), leaves a mark, and its next start sets that journal
// aside without trusting it again, even though every page still reads.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { journalsSetAside } from "../../agent/journal-aside.ts";
import { JournalCorruptError } from "../../agent/journal-faults.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "run";
let cloud: TestCloud;
let running: RunningAgent | undefined;
const work = tempDir();

beforeAll(async () => {
  cloud = await startTestCloud();
});

afterAll(async () => {
  await running?.stop();
  await cloud?.stop();
  work.remove();
});

it("fails the running agent, marks the journal, and the next start sets it aside and replicates on", async () => {
  const src = join(work.path, "src");
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, "a.txt"), "a");
  const config = loadConfig(cloud.writeConfig(work.path, [{ name: SET, path: "src" }]));
  const matches = async () => expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(src));
  running = await startAgent(config, silentLogger);
  await eventually(matches);

  const journal = running.agent.journal.path;
  // What SQLite raises for a damaged page, as a running agent's journaling meets it.
  running.agent.health.handle(Object.assign(new Error("database disk image is malformed"), { code: "ERR_SQLITE_ERROR", errcode: 11, errstr: "database disk image is malformed" }));
  const failed = await running.failed;
  expect(failed).toBeInstanceOf(JournalCorruptError);
  expect(failed.message).toContain(`the journal ${journal} is corrupt`);
  await running.stop();
  running = undefined;
  expect(existsSync(join(config.stateDir, "journal-corrupt.json"))).toBe(true);

  writeFileSync(join(src, "b.txt"), "made after the journal was found corrupt");
  running = await startAgent(config, silentLogger);
  const [record] = journalsSetAside(config.stateDir);
  expect(record?.reason).toMatch(/^found by the agent at .*: database disk image is malformed$/);
  expect(existsSync(join(config.stateDir, "journal-corrupt.json"))).toBe(false);
  await eventually(matches, 90_000);
});
