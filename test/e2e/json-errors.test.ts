// Every command that takes --json, failing, as a script reads it: stdout holds
// one JSON object (`error`: the kind, `message`: the line stderr has,
// `exitCode`), the human line stays on stderr, and the exit code is kept;
// usage errors found before the command runs (an unknown option) included.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { tidemark, type CliResult } from "../support/cli.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
const work = tempDir();
const src = join(work.path, "src");
const missing = join(work.path, "no-such-config.json");
let config: string;
let deadConfig: string;

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, "a.txt"), "a");
  config = cloud.writeConfig(work.path, [{ name: "web", path: "src" }]);
  const dead = join(work.path, "dead");
  mkdirSync(dead);
  // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
  deadConfig = cloud.writeConfig(dead, [{ name: "web", path: "../src" }], { endpoint: "http://127.0.0.1:9" });
});

afterAll(async () => {
  await cloud?.stop();
  work.remove();
});

interface ErrorJson {
  error: string;
  message: string;
  exitCode: number;
}

/** The failure's JSON on stdout, checked against its stderr line and exit code. */
function failure(out: CliResult, exitCode: number): ErrorJson {
  expect(out.code).toBe(exitCode);
  const json = JSON.parse(out.stdout) as ErrorJson;
  expect(json.exitCode).toBe(exitCode);
  expect(out.stderr).toContain(`tidemark: ${json.message}`);
  return json;
}

/** Each command taking --json, with the arguments that get it past its own checks to the config. */
const COMMANDS: [string, string[]][] = [
  ["status", ["status"]],
  ["doctor", ["doctor"]],
  ["init", ["init", "--cdk-outputs", join(work.path, "no-outputs.json"), "--set", `web=${src}`]],
  ["task", ["task", "web"]],
  ["tasks", ["tasks", "web"]],
  ["snapshots", ["snapshots", "web"]],
  ["restore", ["restore", "web", "--snapshot", "latest", "--to", join(work.path, "restored")]],
  ["timeline", ["timeline", "web"]],
  ["drill", ["drill", "web"]],
  ["prune", ["prune", "web", "--keep", "1"]],
  ["mirror", ["mirror", "web", "--mode", "diff"]],
  ["adopt", ["adopt", "web"]],
  ["verify", ["verify", "web"]],
  ["service", ["service", "install", "--unit-dir", join(work.path, "units"), "--no-start"]],
];

it.each(COMMANDS)("%s --json with an unknown option: a usage error as JSON, exit 2", async (_name, args) => {
  const json = failure(await tidemark([...args, "--json", "--no-such-option"]), 2);
  expect(json.error).toBe("usage");
  expect(json.message).toContain("unknown option --no-such-option");
});

it.each(COMMANDS.filter(([name]) => name !== "doctor" && name !== "init"))("%s --json without its config: the config error as JSON, exit 1", async (_name, args) => {
  const json = failure(await tidemark([...args, "--json", "--config", missing]), 1);
  expect(json.error).toBe("config");
  expect(json.message).toContain(`no config file at ${missing}`);
});

it("init --json without the outputs file it names, and doctor --json without a config: still one JSON object on stdout", async () => {
  const init = await tidemark([...(COMMANDS.find(([name]) => name === "init")?.[1] ?? []), "--json", "--config", join(work.path, "written.json")]);
  expect(init.code).toBe(1);
  expect(JSON.parse(init.stdout)).toMatchObject({ exitCode: 1, message: expect.stringContaining("no-outputs.json") });
  // doctor's report is its JSON, failing checks and all.
  const doctor = await tidemark(["doctor", "--json", "--config", missing]);
  expect(doctor.code).toBe(1);
  expect(JSON.parse(doctor.stdout)).toMatchObject({ ok: false });
});

it.each([["snapshots"], ["timeline"], ["tasks"]])("%s --json with an endpoint nothing answers: unreachable, as JSON", async (name) => {
  const json = failure(await tidemark([name, "web", "--json", "--config", deadConfig]), 1);
  expect(json.error).toBe("unreachable");
  expect(json.message).toContain("127.0.0.1:9");
});

it("restore --json of a snapshot that does not exist, a set not configured, and a restore into the replicated folder refused: each as JSON", async () => {
  const notFound = failure(await tidemark(["restore", "web", "--snapshot", "no-such-snapshot", "--to", join(work.path, "r1"), "--json", "--config", config]), 1);
  expect(notFound.message).toContain("no-such-snapshot");
  const noSet = failure(await tidemark(["snapshots", "nope", "--json", "--config", config]), 2);
  expect(noSet).toMatchObject({ error: "usage", message: expect.stringContaining('no set named "nope"') });
  const refused = await tidemark(["drill", "web", "--to", join(src, "inside"), "--json", "--config", config]);
  const json = failure(refused, refused.code ?? 0);
  expect(json.exitCode).toBeGreaterThan(0);
  expect(json.message).toContain(src);
});
