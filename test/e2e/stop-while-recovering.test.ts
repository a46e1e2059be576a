// `tidemark run` stops on SIGINT also while a recovery waits on the target.
// A second host's agent on a set another host owns begins a new generation
// and waits for its verification, which the target never runs (the agent
// holds its sends, which the target would refuse): that wait kept the process alive up to 10 minutes after the
// signal, and a supervisor had to kill it.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent } from "../../agent/runtime.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { readOwnerKey } from "../../agent/owner-key.ts";
import { spawnTidemark, tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const SET = "www";
let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;
let rogue: ChildProcess | undefined;

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});
afterAll(async () => {
  if (rogue?.exitCode === null) rogue.kill("SIGKILL");
  await cloud?.stop();
  work?.remove();
});

it("stops at once on SIGINT while its recovery waits for a target that refuses its messages", async () => {
  const ownerDir = join(work.path, "owner");
  const rogueDir = join(work.path, "rogue");
  mkdirSync(join(ownerDir, "site"), { recursive: true });
  mkdirSync(join(rogueDir, "site"), { recursive: true });
  writeFileSync(join(ownerDir, "site", "index.html"), "<h1>genuine</h1>");
  writeFileSync(join(rogueDir, "site", "index.html"), "<h1>rogue</h1>");
  const owner = await startAgent(loadConfig(cloud.writeConfig(ownerDir, [{ name: SET, path: "site" }])), silentLogger);
  await eventually(async () => expect((await readSetStatus(cloud.store, SET)).lastSeq).toBeGreaterThan(0));
  await owner.stop();

  const rogueConfig = cloud.writeConfig(rogueDir, [{ name: SET, path: "site" }]);
  const child = spawnTidemark(["run", "--config", rogueConfig]);
  rogue = child;
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  await new Promise<void>((resolve, reject) => {
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
      // Signals are handled once it replicates; the recovery began before that and is still waiting.
      if (stderr.includes("target out of sync; recovering") && stderr.includes("replicating")) resolve();
    });
    child.once("exit", (code) => reject(new Error(`the agent exited with ${code} before recovering: ${stderr}`)));
  });
  // Asked of that agent while its recovery waits, an operator's operation fails at once (it used to wait out the
  // 10-minute stall limit), naming the owner's key and the way out; the recovery goes on waiting.
  const ownerKey = readOwnerKey(join(ownerDir, "state"));
  const rogueKey = readOwnerKey(join(rogueDir, "state"));
  if (!ownerKey || !rogueKey) throw new Error("an agent made no key");
  const verify = await tidemark(["verify", SET, "--json", "--config", rogueConfig]);
  expect(verify.code).toBe(1);
  expect(JSON.parse(verify.stdout)).toMatchObject({ error: "sends-held", set: SET, ownerKeyId: ownerKey.keyId, hostKeyId: rogueKey.keyId, remedy: `tidemark adopt ${SET}` });
  expect(verify.stderr).toContain(`run \`tidemark adopt ${SET}\` on this host`);
  const task = await tidemark(["task", SET, "--wait", "--json", "--config", rogueConfig]);
  expect(task.code).toBe(1);
  expect(JSON.parse(task.stdout)).toMatchObject({ set: SET, held: { error: "sends-held", ownerKeyId: ownerKey.keyId } });
  child.kill("SIGINT");
  expect(await exited).toBe(0);
  expect(stderr).toContain("stopping");
  expect(stderr).not.toContain("recovery failed");
});
