// `tidemark status` against a target that does not answer: it names the
// target unreachable after the status read's own attempts and asks nothing
// more of it (each further read would wait its timeout again: against a
// black-holed endpoint status took over four minutes), and its reads give up
// on a silent connection sooner than the SDK's minute.

import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { clientOptionsOf } from "../../agent/aws-options.ts";
import { collectStatus, STATUS_IDLE_TIMEOUT_MS } from "../../agent/commands/status.ts";
import { loadConfig } from "../../agent/config.ts";
import { tempDir } from "../support/tree.ts";

let server: Server;
let dir: ReturnType<typeof tempDir>;
let config: string;
/** The path of every request the target received. */
const requests: string[] = [];

beforeAll(async () => {
  // A target whose every answer is a server error, at once: the SDK retries it like any unanswered request.
  server = createServer((request, response) => {
    requests.push(new URL(request.url ?? "/", "http://127.0.0.1").pathname);
    request.resume();
    response.writeHead(503, { "content-type": "application/xml" }).end("<Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = tempDir();
  mkdirSync(join(dir.path, "www"));
  config = join(dir.path, "tidemark.config.json");
  writeFileSync(config, JSON.stringify({ endpoint, queueUrl: `${endpoint}/000000000000/q.fifo`, bucket: "bucket", stateDir: "s", sets: [{ name: "www", path: "www" }] }));
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  dir.remove();
});

it("names the target unreachable and reads nothing more of it once the status read failed", async () => {
  const [report] = await collectStatus(config);
  expect(report?.target.reachable).toBe(false);
  expect(report?.problems.map((p) => p.kind)).toContain("target-unreachable");
  expect(report?.lastDrill).toBeNull();
  expect(requests.length).toBeGreaterThan(0);
  // Only the set's state was asked for: no drill report listing after the target proved unreachable.
  expect(requests.filter((path) => !path.includes("/state/"))).toEqual([]);
});

it("gives a silent connection less than the SDK's minute", () => {
  expect(STATUS_IDLE_TIMEOUT_MS).toBeLessThan(60_000);
  expect(clientOptionsOf(loadConfig(config), { idleTimeoutMs: STATUS_IDLE_TIMEOUT_MS }).http?.idleTimeoutMs).toBe(STATUS_IDLE_TIMEOUT_MS);
});
