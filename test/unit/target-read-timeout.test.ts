// The CLI's reads of the target (snapshots, tasks, timeline, restore, drill)
// give up on an attempt that sees no byte for TARGET_READ_IDLE_TIMEOUT_MS, not
// the SDK's default minute: against an endpoint that accepted connections and
// never answered, `tidemark snapshots` sat silent for over three minutes.

import { writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { TARGET_READ_IDLE_TIMEOUT_MS, withTargetStore } from "../../agent/commands/target-store.ts";
import { loadConfig } from "../../agent/config.ts";
import { tempDir } from "../support/tree.ts";

const server = createServer((_request, response) => {
  response.writeHead(404, { "content-type": "application/xml" }).end("<Error><Code>NoSuchKey</Code></Error>");
});
let dir: ReturnType<typeof tempDir>;

beforeAll(async () => {
  dir = tempDir();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  dir.remove();
});

it("reads the bucket with a handler that abandons a silent attempt after the CLI's idle timeout", async () => {
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const file = join(dir.path, "tidemark.config.json");
  writeFileSync(file, JSON.stringify({ region: "us-east-1", endpoint, queueUrl: `${endpoint}/000000000000/q.fifo`, bucket: "tidemark-test", stateDir: "state", sets: [{ name: "docs", path: "docs" }] }));
  const handler = await withTargetStore(loadConfig(file), async (store) => {
    // The handler's settings are resolved by its first request.
    expect(await store.head("absent")).toBeUndefined();
    return store.client.config.requestHandler;
  });
  expect(handlerConfigs(handler)).toMatchObject({ socketTimeout: TARGET_READ_IDLE_TIMEOUT_MS });
  expect(TARGET_READ_IDLE_TIMEOUT_MS).toBeLessThan(60_000);
});

/** The settings the SDK's Node handler resolved (its `httpHandlerConfigs()`). */
function handlerConfigs(handler: object): unknown {
  if (!("httpHandlerConfigs" in handler) || typeof handler.httpHandlerConfigs !== "function") return undefined;
  const configs: unknown = handler.httpHandlerConfigs.call(handler);
  return configs;
}
