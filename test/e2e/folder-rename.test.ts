// A folder renamed on the source, on the local cloud with the watcher: its
// large file moves on the target (a rename record), never its content again,
// and the target ends exact.

import { randomBytes } from "node:crypto";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "app";
const MiB = 1024 * 1024;
const LARGE = 20 * MiB;

let cloud: TestCloud;
let agent: RunningAgent | undefined;
const work = tempDir();
const src = join(work.path, "src");

beforeAll(async () => {
  cloud = await startTestCloud();
  for (let d = 0; d < 10; d++) {
    mkdirSync(join(src, "node_modules", `pkg${d}`, "lib"), { recursive: true });
    for (let f = 0; f < 20; f++) writeFileSync(join(src, "node_modules", `pkg${d}`, "lib", `f${f}.js`), `module.exports = ${d * 100 + f};\n`);
  }
  writeFileSync(join(src, "node_modules", "pkg3", "lib", "engine.bin"), randomBytes(LARGE));
  agent = await startAgent(loadConfig(cloud.writeConfig(work.path, [{ name: SET, path: "src" }])), silentLogger);
});

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

const converged = () =>
  eventually(async () => {
    expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(src));
  }, 120_000);

it("moves a renamed folder's large file on the target instead of sending it again", async () => {
  await converged();
  const sent = () => agent?.agent.journal.sets.counters(SET).bytesSent ?? 0;
  const before = sent();
  renameSync(join(src, "node_modules"), join(src, "node_modules.old"));
  await converged();
  // 200 small files inline and the records around them; the large file alone is 20 MiB.
  expect(sent() - before).toBeLessThan(MiB);
}, 300_000);
