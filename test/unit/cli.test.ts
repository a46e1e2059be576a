import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

describe("tidemark CLI", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.remove());

  it.each(["run", "status", "local", "init", "mirror", "verify", "task", "tasks", "snapshots", "restore", "timeline", "drill", "prune", "doctor", "service", "adopt", "accept-root"])("%s --help shows usage and an example", async (command) => {
    const out = await tidemark([command, "--help"]);
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(new RegExp(`^Usage: tidemark ${command}`));
    expect(out.stdout).toMatch(/Examples?:\n {2}tidemark /);
  });

  it.each([
    [["--action", "ebs"], /--action must be one of snapshot, invoke, event, backup, ebs-snapshot, got "ebs"/],
    [["--action", "ebs-snapshot"], /--action ebs-snapshot needs a volume set; "db" is a file set/],
    [["--action", "invoke"], /--action invoke needs --function NAME/],
    [["--timeout", "901"], /--timeout must be a number of seconds from 0 to 900/],
    [["--input", "[1]"], /--input must be a JSON object/],
    [["--wait-timeout", "5"], /--wait-timeout goes with --wait/],
  ])("task %j is a usage error, before anything runs", async (args, message) => {
    const config = join(dir.path, "tidemark.config.json");
    writeFileSync(config, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "b-b-b", stateDir: "state", sets: [{ name: "db", path: "db" }] }));
    const out = await tidemark(["task", "db", ...args, "--quiesce", `touch ${join(dir.path, "quiesced")}`, "--config", config]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(message);
    expect(existsSync(join(dir.path, "quiesced"))).toBe(false);
  });

  it("keeps its compiled code in the OS's temporary folder between runs, unless told not to", async () => {
    // Unset values are left out of the child's environment: neither this process's cache settings nor a test runner's apply.
    const env = { TMPDIR: dir.path, NODE_COMPILE_CACHE: undefined, NODE_DISABLE_COMPILE_CACHE: undefined };
    const off = await tidemark(["status", "--help"], { env: { ...env, NODE_DISABLE_COMPILE_CACHE: "1" } });
    expect(off.code).toBe(0);
    expect(existsSync(join(dir.path, "node-compile-cache"))).toBe(false);
    const on = await tidemark(["status", "--help"], { env });
    expect(on.code).toBe(0);
    expect(readdirSync(join(dir.path, "node-compile-cache")).length).toBeGreaterThan(0);
  });

  it("lists the commands on --help", async () => {
    const out = await tidemark(["--help"]);
    expect(out.code).toBe(0);
    expect(out.stdout).toContain("run");
    expect(out.stdout).toContain("status");
  });

  it("refuses an unknown command and an unknown option with exit code 2 and one line", async () => {
    const unknown = await tidemark(["frobnicate"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/^tidemark: unknown command "frobnicate" \(commands: local, init, run, status, .*; see `tidemark --help`\)\n$/);
    const option = await tidemark(["status", "--bogus"]);
    expect(option.code).toBe(2);
    expect(option.stderr).toBe("tidemark: unknown option --bogus for `tidemark status` (see `tidemark status --help`)\n");
  });

  it.each([
    [["stauts"], 'unknown command "stauts" (did you mean "status"?)'],
    [["--verison"], 'unknown command "--verison" (did you mean --version?)'],
    [["status", "--jsno"], "unknown option --jsno for `tidemark status` (did you mean --json?)"],
    [["task", "db", "--lable", "x"], "unknown option --lable for `tidemark task` (did you mean --label?)"],
    [["task", "db", "-q"], "unknown option -q for `tidemark task`"],
    [["task", "db", "--label"], "option --label needs a value"],
    [["task", "db", "--timeout", "-5"], "option --timeout needs a value: did you forget it before -5? One that begins with a dash goes as --timeout=-5"],
    [["task", "db", "--label", "--wait"], "option --label needs a value: did you forget it before --wait? One that begins with a dash goes as --label=--wait"],
    [["status", "--json=yes"], "option --json takes no value"],
    [["status", "extra"], 'tidemark status takes no argument "extra"'],
  ])("says %j in its own words, with the closest known name, and exits 2", async (args, message) => {
    const out = await tidemark(args);
    expect(out.code).toBe(2);
    expect(out.stderr).toContain(message);
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("takes a lone - as an option's value, as Node's parser does", async () => {
    const out = await tidemark(["task", "db", "--label", "-", "--config", join(dir.path, "none.json")]);
    expect(out.stderr).not.toContain("needs a value");
    expect(out.stderr).toContain("none.json");
  });

  it("refuses a local state folder inside --source before writing anything", async () => {
    mkdirSync(join(dir.path, "src"));
    const out = await tidemark(["local", "--port", "0", "--state", join(dir.path, "src", ".tidemark"), "--source", join(dir.path, "src")]);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/^tidemark: the state folder .*src\/\.tidemark is inside --source .*src: the set would replicate its own journal; pass --state DIR outside it\n$/);
    expect(existsSync(join(dir.path, "src", ".tidemark"))).toBe(false);
  });

  it("refuses a --source that is already a set under another name, and leaves the config as it was", async () => {
    const state = join(dir.path, "state");
    mkdirSync(join(dir.path, "docs"));
    mkdirSync(state);
    const config = join(state, "tidemark.config.json");
    const before = JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "agent", sets: [{ name: "docs", path: join(dir.path, "docs") }] });
    writeFileSync(config, before);
    const out = await tidemark(["local", "--port", "0", "--state", state, "--source", join(dir.path, "docs"), "--set", "papers"]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^tidemark: config file .*state\/tidemark\.config\.json: sets "docs" and "papers" are the same folder/);
    expect(readFileSync(config, "utf8")).toBe(before);
    expect(existsSync(`${config}.tmp`)).toBe(false);
  });

  it("says where it looked when there is no config", async () => {
    const out = await tidemark(["status"], { cwd: dir.path, env: { TIDEMARK_CONFIG: "" } });
    expect(out.code).toBe(1);
    expect(out.stderr).toContain(`no config file at ${join(dir.path, "tidemark.config.json")}`);
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("names the bad key of a wrong config", async () => {
    const file = join(dir.path, "c.json");
    writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "s", sets: [{ name: "../x", path: "." }] }));
    const out = await tidemark(["run", "--config", file]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^tidemark: config file .*c\.json: sets\.0\.name: set name "\.\.\/x" may only hold/);
  });

  it("names the bad window of a bandwidth schedule", async () => {
    const file = join(dir.path, "c.json");
    const schedule = [{ from: "08:00", to: "18:00", bytesPerSecond: 1000 }, { from: "8pm", to: "06:00", bytesPerSecond: 0 }];
    writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "s", sets: [{ name: "x", path: "." }], bandwidth: { schedule } }));
    const out = await tidemark(["run", "--config", file]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^tidemark: config file .*c\.json: bandwidth\.schedule\.1\.from: from must be HH:MM/);
  });

  it("refuses to run on an unreadable source folder", async () => {
    const file = join(dir.path, "c.json");
    writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "bucket", stateDir: "s", sets: [{ name: "x", path: "nope" }] }));
    const out = await tidemark(["run", "--config", file]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^tidemark: set "x": cannot read .*nope: ENOENT/);
  });

  it("fails clearly when the endpoint is unreachable", async () => {
    const file = join(dir.path, "c.json");
    mkdirSync(join(dir.path, "x"));
    writeFileSync(
      file,
      JSON.stringify({
        endpoint: "http://127.0.0.1:9",
        queueUrl: "http://127.0.0.1:9/000000000000/q.fifo",
        bucket: "bucket",
        stateDir: "s",
        sets: [{ name: "x", path: "x" }],
      }),
    );
    const out = await tidemark(["run", "--config", file]);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^tidemark: cannot reach the queue .* at http:\/\/127\.0\.0\.1:9: ECONNREFUSED \(is `tidemark local` running\?\)\n$/);
  });

  it("shows an unreachable target in status, and exits 1 for it", async () => {
    const file = join(dir.path, "c.json");
    writeFileSync(
      file,
      JSON.stringify({ endpoint: "http://127.0.0.1:9", queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "s", sets: [{ name: "x", path: "x" }] }),
    );
    const out = await tidemark(["status", "--json", "--config", file]);
    expect(out.code).toBe(1);
    const report = JSON.parse(out.stdout) as { sets: { set: string; target: { reachable: boolean }; inSync: boolean }[] };
    expect(report.sets[0]).toMatchObject({ set: "x", target: { reachable: false }, inSync: false, healthy: false, problems: [expect.objectContaining({ kind: "target-unreachable" }), expect.objectContaining({ kind: "agent-stopped" })] });
  });
});
