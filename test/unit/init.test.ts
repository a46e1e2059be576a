// `tidemark init --cdk-outputs`: an agent config from the stack's outputs.

import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { hostRoleOutput, STACK_OUTPUT } from "../../contract/stack-outputs.ts";
import { ownerKeyPath, readOwnerKey } from "../../agent/owner-key.ts";
import { tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

const QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/tidemark.fifo";

function stackOutputs(overrides: Record<string, string> = {}) {
  return {
    [STACK_OUTPUT.queueUrl]: QUEUE,
    [STACK_OUTPUT.bucket]: "tidemark-targetbucket-1a2b3c",
    [STACK_OUTPUT.region]: "eu-west-1",
    [STACK_OUTPUT.agentPolicyArn]: "arn:aws:iam::123456789012:policy/Tidemark-AgentAccessPolicy",
    [STACK_OUTPUT.tasksEnabled]: "true",
    ...overrides,
  };
}

describe("tidemark init", () => {
  let dir: ReturnType<typeof tempDir>;
  let outputs: string;
  let docs: string;
  beforeEach(() => {
    dir = tempDir();
    outputs = join(dir.path, "cdk-outputs.json");
    docs = join(dir.path, "docs");
    mkdirSync(docs);
    writeFileSync(outputs, JSON.stringify({ Tidemark: stackOutputs() }));
  });
  afterEach(() => dir.remove());

  it("writes a config every other command loads, and says what to do next", async () => {
    mkdirSync(join(dir.path, "www"));
    const out = await tidemark(["init", "--cdk-outputs", outputs, "--set", `docs=${docs}`, "--set", "www=www"], { cwd: dir.path, env: { TIDEMARK_CONFIG: "" } });
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    const file = join(dir.path, "tidemark.config.json");
    expect(out.stdout).toContain(`wrote ${file} for stack Tidemark (eu-west-1)`);
    expect(out.stdout).toContain("attach the policy arn:aws:iam::123456789012:policy/Tidemark-AgentAccessPolicy");
    const config = loadConfig(file);
    expect(config).toMatchObject({ region: "eu-west-1", queueUrl: QUEUE, bucket: "tidemark-targetbucket-1a2b3c", tasks: { enabled: true } });
    expect(config.endpoint).toBeUndefined();
    expect(config.stateDir).toBe(join(dir.path, "tidemark-state"));
    expect(config.sets.map((s) => [s.name, s.root])).toEqual([
      ["docs", docs],
      ["www", join(dir.path, "www")],
    ]);
    expect(statSync(file).mode & 0o077).toBe(0);
  });

  it("picks the stack named by --stack, writes to --config, and prints JSON", async () => {
    writeFileSync(outputs, JSON.stringify({ Other: { Unrelated: "x" }, Prod: stackOutputs(), Test: stackOutputs({ [STACK_OUTPUT.region]: "us-east-2", [STACK_OUTPUT.tasksEnabled]: "false" }) }));
    const file = join(dir.path, "etc", "agent.json");
    mkdirSync(join(dir.path, "etc"));
    const out = await tidemark(["init", "--cdk-outputs", outputs, "--stack", "Test", "--set", `docs=${docs}`, "--config", file, "--state-dir", join(dir.path, "var"), "--json"]);
    expect(out.code).toBe(0);
    const printed = JSON.parse(out.stdout) as { config: string; stack: string; region: string };
    expect(printed).toMatchObject({ config: file, stack: "Test", region: "us-east-2" });
    const config = loadConfig(file);
    expect(config.region).toBe("us-east-2");
    expect(config.tasks.enabled).toBe(false);
    expect(config.stateDir).toBe(join(dir.path, "var"));
  });

  it("creates this host's signing key, and with --host points the agent at that host's own role", async () => {
    const roleArn = "arn:aws:iam::123456789012:role/Tidemark-HostRolesWeb1";
    writeFileSync(outputs, JSON.stringify({ Tidemark: stackOutputs({ [hostRoleOutput("web-1")]: roleArn }) }));
    const file = join(dir.path, "c.json");
    const out = await tidemark(["init", "--cdk-outputs", outputs, "--host", "web-1", "--set", `docs=${docs}`, "--config", file]);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain(`run the agent as the role ${roleArn}`);
    const key = readOwnerKey(join(dir.path, "tidemark-state"));
    expect(key).toBeDefined();
    expect(out.stdout).toContain(`this host's signing key: ${key?.keyId}`);
    expect(statSync(ownerKeyPath(join(dir.path, "tidemark-state"))).mode & 0o077).toBe(0);
    const unknown = await tidemark(["init", "--cdk-outputs", outputs, "--host", "db-2", "--set", `docs=${docs}`, "--config", file, "--force"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('has no role for host "db-2" (no HostRoleArnDb2 output');
  });

  it("asks for --stack when the file holds several tidemark stacks", async () => {
    writeFileSync(outputs, JSON.stringify({ Prod: stackOutputs(), Test: stackOutputs() }));
    const out = await tidemark(["init", "--cdk-outputs", outputs, "--set", `docs=${docs}`, "--config", join(dir.path, "c.json")]);
    expect(out.code).toBe(1);
    expect(out.stderr).toBe(`tidemark: outputs file ${outputs} holds several tidemark stacks (Prod, Test): pick one with --stack\n`);
  });

  it.each([
    ["a missing outputs file", () => ["--cdk-outputs", join(dir.path, "nope.json")], /no outputs file at .*nope\.json \(write one with `npx cdk deploy --outputs-file/],
    ["an outputs file without a tidemark stack", () => (writeFileSync(outputs, '{"Web":{"Url":"x"}}'), ["--cdk-outputs", outputs]), /holds no tidemark stack/],
    ["a stack missing an output", () => (writeFileSync(outputs, JSON.stringify({ T: { QueueUrl: QUEUE } })), ["--cdk-outputs", outputs]), /stack T has no BucketName output/],
    ["an outputs file that is not JSON", () => (writeFileSync(outputs, "Outputs:\n  QueueUrl"), ["--cdk-outputs", outputs]), /cannot read outputs file/],
    ["an unknown --stack", () => ["--cdk-outputs", outputs, "--stack", "Nope"], /has no tidemark stack named "Nope" \(it has: Tidemark\)/],
  ])("fails with one line on %s", async (_label, args, message) => {
    const out = await tidemark(["init", ...args(), "--set", `docs=${docs}`, "--config", join(dir.path, "c.json")]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(message);
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
  });

  it.each([
    ["docs", /--set wants NAME=PATH, got "docs"/],
    ["../x=.", /--set \.\.\/x=\.: set name/],
    ["docs=/no/such/folder", /cannot read \/no\/such\/folder: ENOENT/],
  ])("refuses --set %s with exit code 2", async (set, message) => {
    const out = await tidemark(["init", "--cdk-outputs", outputs, "--set", set, "--config", join(dir.path, "c.json")]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(message);
  });

  it("leaves an existing config alone unless --force", async () => {
    const file = join(dir.path, "c.json");
    writeFileSync(file, "{}");
    const refused = await tidemark(["init", "--cdk-outputs", outputs, "--set", `docs=${docs}`, "--config", file]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("already exists; pass --force to replace it");
    expect(readFileSync(file, "utf8")).toBe("{}");
    const forced = await tidemark(["init", "--cdk-outputs", outputs, "--set", `docs=${docs}`, "--config", file, "--force"]);
    expect(forced.code).toBe(0);
    expect(loadConfig(file).queueUrl).toBe(QUEUE);
  });

  it("needs --cdk-outputs and at least one --set", async () => {
    expect((await tidemark(["init", "--set", `docs=${docs}`])).stderr).toMatch(/--cdk-outputs FILE is required/);
    expect((await tidemark(["init", "--cdk-outputs", outputs])).stderr).toMatch(/at least one --set NAME=PATH is required/);
  });
});
