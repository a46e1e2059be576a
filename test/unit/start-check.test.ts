// The agent's start asks the target whether its queue and bucket are there
// with clients that give up on an endpoint answering byte by byte: before,
// `tidemark run`, and `verify` or `task` starting an agent for the duration,
// sat on such an endpoint with no output. `restore` reads with the same rule.

import { mkdirSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { withRestoreStore } from "../../agent/commands/restore-store.ts";
import { TARGET_READ_IDLE_TIMEOUT_MS } from "../../agent/commands/target-store.ts";
import { loadConfig, type AgentConfig } from "../../agent/config.ts";
import { UnreachableError } from "../../agent/preflight.ts";
import { checkTargetAtStart } from "../../agent/start-check.ts";
import { S3Store } from "../../lambdas/target/index.ts";
import { tempDir } from "../support/tree.ts";
import { tricklingEndpoint } from "../support/trickling-endpoint.ts";

const server = tricklingEndpoint();
/** Answers every request at once: no such key. */
const answering = createHttpServer((_request, response) => {
  response.writeHead(404, { "content-type": "application/xml" }).end("<Error><Code>NoSuchKey</Code></Error>");
});
const dir = tempDir();
let config: AgentConfig;

function writeConfig(name: string, port: number): AgentConfig {
  const endpoint = `http://127.0.0.1:${port}`;
  const file = join(dir.path, name);
  writeFileSync(file, JSON.stringify({ endpoint, queueUrl: `${endpoint}/000000000000/q.fifo`, bucket: "bucket", stateDir: "s", sets: [{ name: "www", path: "www" }] }));
  return loadConfig(file);
}

beforeAll(async () => {
  mkdirSync(join(dir.path, "www"));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  await new Promise<void>((resolve) => answering.listen(0, "127.0.0.1", resolve));
  config = writeConfig("slow.json", (server.address() as AddressInfo).port);
});

afterAll(async () => {
  await Promise.all([server, answering].map((s) => new Promise((resolve) => s.close(resolve))));
  dir.remove();
});

it("fails the start's check of a target that answers byte by byte, saying how little moved", async () => {
  const check = checkTargetAtStart(config, { minimumTransfer: { bytes: 64, windowMs: 300 } });
  await expect(check).rejects.toBeInstanceOf(UnreachableError);
  await expect(check).rejects.toThrow(/^cannot reach the queue .*: ETIMEDOUT: the connection to 127\.0\.0\.1:\d+ moved \d+ bytes .* in 0\.3 s/);
});

it("reads for a restore with the CLI reads' idle timeout and minimum transfer", async () => {
  const agent = await withRestoreStore(writeConfig("answering.json", (answering.address() as AddressInfo).port), async (store) => {
    if (!(store instanceof S3Store)) throw new Error("a restore reads through an S3Store");
    const { requestHandler } = store.client.config;
    // The handler resolves its settings on its first request.
    expect(await store.head("absent")).toBeUndefined();
    return "httpHandlerConfigs" in requestHandler && typeof requestHandler.httpHandlerConfigs === "function" ? (requestHandler.httpHandlerConfigs.call(requestHandler) as unknown) : undefined;
  });
  expect(agent).toMatchObject({ socketTimeout: TARGET_READ_IDLE_TIMEOUT_MS });
  // The guard (slow-transfers.ts) sets the agent's own keepSocketAlive, to stop watching a connection back in the pool.
  const httpAgent = typeof agent === "object" && agent !== null && "httpAgent" in agent ? agent.httpAgent : undefined;
  expect(typeof httpAgent === "object" && httpAgent !== null && Object.hasOwn(httpAgent, "keepSocketAlive")).toBe(true);
});
