// `tidemark run`'s start: it loads the modules replicating needs and not the
// ones only other commands or rare settings need (restore and drills, the EBS
// and EventBridge clients, Node's fetch behind an ESM import of node:http),
// and with its modules loaded on demand it still fails clearly, and exits, on
// a bad config or a target it cannot reach.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, expect, it } from "vitest";
import { runProcess } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

const LAUNCHER = fileURLToPath(new URL("../../agent/bin/tidemark.js", import.meta.url));

/** Reports on stderr, as the process exits, every module the ESM loader loaded and whether Node's fetch was. */
const REPORT = `data:text/javascript,${encodeURIComponent(`
import { registerHooks } from "node:module";
const loaded = new Set();
registerHooks({ load(url, context, next) { loaded.add(url); return next(url, context); } });
process.on("exit", () => process.stderr.write("LOADED " + JSON.stringify({ modules: [...loaded], fetch: process.moduleLoadList.some((m) => m.includes("undici")) }) + "\\n"));
`)}`;

/** Credentials in the environment: the SDK does not look for others (an instance's metadata endpoint) before connecting. */
const ENV = { ...process.env, AWS_ACCESS_KEY_ID: "test", AWS_SECRET_ACCESS_KEY: "test", AWS_EC2_METADATA_DISABLED: "true" };

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir("tidemark-run-start-");
});
afterEach(() => dir.remove());

/** A process still running after 30 s is killed (code null): the folder worker `run` starts first must not hold it. */
function run(config: string) {
  return runProcess(process.execPath, ["--import", REPORT, LAUNCHER, "run", "--config", config], { env: ENV, timeoutMs: 30_000 });
}

function report(stderr: string): { modules: string[]; fetch: boolean } {
  const line = stderr.split("\n").find((l) => l.startsWith("LOADED "));
  if (!line) throw new Error(`no module report in: ${stderr}`);
  return JSON.parse(line.slice("LOADED ".length)) as { modules: string[]; fetch: boolean };
}

it("loads what replicating needs up to the target check, not restore, drills, the EBS or EventBridge clients or Node's fetch", async () => {
  mkdirSync(join(dir.path, "src"));
  const config = join(dir.path, "tidemark.config.json");
  // Nothing listens on port 9: the start gets as far as its first request, with everything `run` loads before it.
  writeFileSync(config, JSON.stringify({ region: "us-east-1", queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "b-b-b", stateDir: join(dir.path, "state"), sets: [{ name: "docs", path: join(dir.path, "src") }] }));
  const out = await run(config);
  expect(out.code).toBe(1);
  expect(out.stderr).toMatch(/^tidemark: cannot reach the queue http:\/\/127\.0\.0\.1:9\/000000000000\/q\.fifo at AWS: ECONNREFUSED$/m);
  const { modules, fetch } = report(out.stderr);
  // It did load the agent: the check ran from the runtime, after the journal was opened.
  expect(modules.some((url) => url.endsWith("/agent/runtime.ts"))).toBe(true);
  expect(modules.some((url) => url.endsWith("/agent/journal.ts"))).toBe(true);
  const unneeded = modules.filter((url) => /\/agent\/(drill|restore[^/]*|recovery-points)\.ts$|@aws-sdk\/client-(ebs|eventbridge)\//.test(url));
  expect(unneeded).toEqual([]);
  expect(fetch).toBe(false);
});

it("fails in one line and exits on a config it cannot use, the folder worker it started first included", async () => {
  const missing = await run(join(dir.path, "missing.json"));
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/^tidemark: no config file at .*missing\.json \(pass --config FILE/);
  const bad = join(dir.path, "bad.json");
  writeFileSync(bad, JSON.stringify({ queueUrl: 5 }));
  const invalid = await run(bad);
  expect(invalid.code).toBe(1);
  expect(invalid.stderr).toMatch(/^tidemark: config file .*bad\.json: queueUrl: Invalid input: expected string, received number\n/);
});
