// A running agent (`tidemark run`'s wiring) behind an HTTP proxy: its config
// names the target by a host that resolves nowhere, so every file that
// arrives went through the proxy, with the agent's User-Agent.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { USER_AGENT } from "../../lambdas/aws-clients.ts";
import { CountingProxy } from "../support/counting-proxy.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let proxy: CountingProxy;
let agent: RunningAgent | undefined;
const work = tempDir();
const src = join(work.path, "src");

beforeAll(async () => {
  cloud = await startTestCloud();
  const emulator = new URL(cloud.endpoint);
  proxy = await CountingProxy.start({ "target.invalid": { host: emulator.hostname, port: Number(emulator.port) } });
  mkdirSync(src, { recursive: true });
  for (let i = 0; i < 5; i++) writeFileSync(join(src, `f${i}.txt`), `file ${i}\n`);
});

afterAll(async () => {
  await agent?.stop();
  await proxy?.stop();
  await cloud?.stop();
  work.remove();
});

it("replicates a tree through the config's proxy to a target it could not reach directly", async () => {
  const named = `http://target.invalid:${new URL(cloud.endpoint).port}`;
  const config = cloud.writeConfig(work.path, [{ name: "web", path: "src" }], {
    endpoint: named,
    queueUrl: cloud.queueUrl.replace(cloud.endpoint, named),
    proxy: proxy.url,
  });
  agent = await startAgent(loadConfig(config), silentLogger);
  await eventually(async () => expect(await pictureOfTarget(cloud.store, "web")).toEqual(await pictureOfSource(src)));
  const kinds = new Set(proxy.forwarded.map((r) => `${r.method} ${r.headers["x-amz-target"] ?? "s3"}`));
  expect(kinds).toContain("POST AmazonSQS.SendMessage");
  expect(proxy.forwarded.every((r) => new URL(r.url).hostname === "target.invalid")).toBe(true);
  expect(proxy.forwarded.every((r) => String(r.headers["user-agent"]).includes(USER_AGENT))).toBe(true);
});
