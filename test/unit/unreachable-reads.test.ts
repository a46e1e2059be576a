// The commands that read the target bucket (snapshots, tasks, timeline,
// restore, drill) against an endpoint nothing listens on: one line naming
// the bucket, the endpoint and what to check, not the SDK's bare
// "Error: connect ECONNREFUSED".

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { OperationTimeoutError } from "../../agent/operations.ts";
import { unreachableOr, UnreachableError } from "../../agent/preflight.ts";
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

it("leaves an error that only ends like the SDK's TimeoutError as it is: a marker not reached within --wait-timeout is no unreachable bucket", () => {
  const waited = new OperationTimeoutError('task t1 (seq 1640) of set "db" is not done: the target has not reached it');
  expect(unreachableOr(waited, "the bucket tidemark", "http://127.0.0.1:4566")).toBe(waited);
  // The SDK's own socket timeout still says which bucket and what to check.
  const socket = Object.assign(new Error("the request socket timed out"), { name: "TimeoutError" });
  expect(unreachableOr(socket, "the bucket tidemark", "http://127.0.0.1:4566")).toBeInstanceOf(UnreachableError);
});
