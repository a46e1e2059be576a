// An agent killed mid-upload leaves its row naming the upload in the journal;
// the next agent's start clears such rows instead of the next large upload.
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig, type ConfigFile } from "../../agent/config.ts";
import { Journal } from "../../agent/journal.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { LOCAL_REGION, startLocalTarget, type LocalTarget } from "../../lambdas/local/target.ts";
import { tempDir } from "../support/tree.ts";

const work = tempDir();
let target: LocalTarget | undefined;
let agent: RunningAgent | undefined;

beforeAll(async () => {
  target = await startLocalTarget({ emulator: { port: 0 }, poller: { waitTimeSeconds: 1 } });
});

afterAll(async () => {
  await agent?.stop();
  await target?.stop();
  work.remove();
});

it("clears the upload rows a stopped agent left, as the agent starts (a removed set's too)", async () => {
  if (!target) throw new Error("no local target");
  mkdirSync(join(work.path, "src"));
  const config: ConfigFile = { region: LOCAL_REGION, endpoint: target.endpoint, queueUrl: target.queueUrl, bucket: target.bucket, stateDir: "state", sets: [{ name: "s", path: "src" }] };
  const file = join(work.path, "tidemark.config.json");
  writeFileSync(file, JSON.stringify(config));
  const gone = spawnSync(process.execPath, ["-e", ""]).pid;
  if (gone === undefined) throw new Error("no process was started");

  const before = Journal.open(join(work.path, "state"));
  try {
    const left = { key: "staging/s/7.x", seq: 7, what: "big.iso", size: 3 * 1024 ** 3, since: new Date().toISOString(), pid: gone, host: hostname() };
    before.atomically(() => {
      before.uploads.begin("s", "a1", left);
      // A set since removed from the config: no upload of it will ever clear its row.
      before.uploads.begin("gone", "a2", { ...left, key: "staging/gone/8.x", seq: 8 });
    });
    expect([before.uploads.of("s").length, before.uploads.of("gone").length]).toEqual([1, 1]);
  } finally {
    before.close();
  }

  agent = await startAgent(loadConfig(file), silentLogger);
  const after = Journal.open(join(work.path, "state"));
  try {
    expect([after.uploads.of("s"), after.uploads.of("gone")]).toEqual([[], []]);
  } finally {
    after.close();
  }
});
