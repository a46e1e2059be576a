// `status` against an unreachable target suggests `tidemark doctor`; against an
// endpoint answering byte by byte, doctor itself printed nothing for minutes
// (no minimum transfer, the SDK's one-minute idle timeout per check). Its
// checks give up with the CLI reads' rule and name how little moved.

import { mkdirSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runDoctor } from "../../agent/doctor.ts";
import { tempDir } from "../support/tree.ts";
import { tricklingEndpoint } from "../support/trickling-endpoint.ts";

const server = tricklingEndpoint();
const dir = tempDir();
let configFile = "";

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  mkdirSync(join(dir.path, "www"));
  configFile = join(dir.path, "config.json");
  writeFileSync(configFile, JSON.stringify({ endpoint, queueUrl: `${endpoint}/000000000000/q.fifo`, bucket: "bucket", stateDir: "s", sets: [{ name: "www", path: "www" }] }));
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  dir.remove();
});

// Without the rule, each of these checks waited out a minute of trickle or more: the limit here is for that hang.
it("fails the queue and bucket checks and warns on the clock of an endpoint that answers byte by byte", { timeout: 60_000 }, async () => {
  const checks = await runDoctor(configFile, { minimumTransfer: { bytes: 64, windowMs: 300 } });
  const moved = /moved \d+ bytes \(sent and received\) in 0\.3 s/;
  const byName = new Map(checks.map((check) => [check.name, check]));
  for (const name of ["queue", "bucket"]) {
    expect(byName.get(name)).toMatchObject({ level: "fail", detail: expect.stringMatching(moved) });
  }
  expect(byName.get("clock")).toMatchObject({ level: "warn", detail: expect.stringMatching(moved) });
});
