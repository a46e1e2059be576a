// The commands that read the target bucket (snapshots, tasks, timeline,
// restore, drill) against an endpoint nothing listens on: one line naming
// the bucket, the endpoint and what to check, not the SDK's bare
// "Error: connect ECONNREFUSED".

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir>;
let config: string;
beforeAll(() => {
  dir = tempDir();
  mkdirSync(join(dir.path, "www"));
  config = join(dir.path, "tidemark.config.json");
  // Port 9 (discard) is closed on the test machine, as in the CLI's other unreachable-endpoint tests.
  writeFileSync(config, JSON.stringify({ endpoint: "http://127.0.0.1:9", queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "s", sets: [{ name: "www", path: "www" }] }));
});
afterAll(() => dir.remove());

it.each([
  ["snapshots", "www"],
  ["tasks", "www"],
  ["timeline", "www"],
  ["restore", "www", "--snapshot", "latest", "--to", "restored"],
])("%s says which bucket it cannot reach and what to check", async (...args) => {
  const out = await tidemark([...args, "--config", config], { cwd: dir.path });
  expect(out.code).toBe(1);
  expect(out.stderr).toMatch(
    /^tidemark: cannot reach the bucket bucket at http:\/\/127\.0\.0\.1:9: connect ECONNREFUSED 127\.0\.0\.1:9 \(is `tidemark local` running\? `tidemark doctor` checks the endpoint, proxy and credentials\)\n$/,
  );
});
