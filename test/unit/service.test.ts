import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { installService, renderUnit, type CommandResult } from "../../agent/service.ts";
import { tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

describe("tidemark service", () => {
  let dir: ReturnType<typeof tempDir>;
  let configFile: string;
  beforeEach(() => {
    dir = tempDir();
    configFile = join(dir.path, "my config.json");
    mkdirSync(join(dir.path, "www"));
    writeFileSync(configFile, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "tidemark", stateDir: "state", sets: [{ name: "www", path: "www" }] }));
  });
  afterEach(() => dir.remove());

  it("renders a unit that runs this tidemark as a confined, restarting service", () => {
    const unit = renderUnit({ config: loadConfig(configFile), node: "/opt/node 24/bin/node", cli: "/opt/tidemark/agent/cli.ts", user: "tidemark" });
    expect(unit).toContain(`ExecStart="/opt/node 24/bin/node" /opt/tidemark/agent/cli.ts run --config "${configFile}" --json-logs`);
    expect(unit).toMatch(/^User=tidemark$/m);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
    expect(unit).toMatch(/^CapabilityBoundingSet=CAP_DAC_READ_SEARCH$/m);
    expect(unit).toContain(`ReadWritePaths=${join(dir.path, "state")}`);
    // A file set needs no devices; a volume set reads one.
    expect(unit).toMatch(/^PrivateDevices=yes$/m);
  });

  it("writes a unit systemd accepts, without starting it, through the CLI", async () => {
    const out = await tidemark(["service", "install", "--config", configFile, "--unit-dir", dir.path, "--no-start", "--user", "root", "--json"]);
    expect(out.stderr).toBe("");
    expect(out.code).toBe(0);
    const unitFile = join(dir.path, "tidemark.service");
    expect(JSON.parse(out.stdout)).toEqual({ unitFile, steps: [`wrote ${unitFile}`] });
    expect(existsSync(join(dir.path, "state"))).toBe(true);
    const verify = spawnSync("systemd-analyze", ["verify", unitFile], { encoding: "utf8" });
    if (verify.error) return; // no systemd-analyze on this machine
    expect(verify.stderr).toBe("");
    expect(verify.status).toBe(0);
  });

  it("creates the service user, gives it the state folder, then enables and starts the unit", () => {
    const calls: string[] = [];
    let created = false;
    const run = (command: string, args: readonly string[]): CommandResult => {
      calls.push([command, ...args].join(" "));
      if (command === "id") return created ? { status: 0, stdout: args[0] === "-u" ? "990\n" : "985\n", stderr: "" } : { status: 1, stdout: "", stderr: "no such user" };
      if (command === "useradd") created = true;
      return { status: 0, stdout: "", stderr: "" };
    };
    const config = loadConfig(configFile);
    const done = installService({ config, node: "/n", cli: "/c", user: "tidemark-test", unitDir: dir.path, start: true, run });
    expect(calls).toEqual([
      "id -u tidemark-test",
      "id -g tidemark-test",
      `useradd --system --no-create-home --home-dir ${config.stateDir} --shell /usr/sbin/nologin tidemark-test`,
      "id -u tidemark-test",
      "id -g tidemark-test",
      `chown -R 990:985 ${config.stateDir}`,
      "systemctl daemon-reload",
      "systemctl enable --now tidemark.service",
    ]);
    expect(done.steps).toEqual([
      "created system user tidemark-test",
      `gave ${config.stateDir} to tidemark-test`,
      `wrote ${join(dir.path, "tidemark.service")}`,
      "enabled and started tidemark.service",
    ]);
    expect(readFileSync(done.unitFile, "utf8")).toMatch(/^User=tidemark-test$/m);
  });

  it("says what failed, and where the unit is, when systemctl refuses", () => {
    const run = (command: string): CommandResult =>
      command === "systemctl" ? { status: 1, stdout: "", stderr: "System has not been booted with systemd" } : { status: 0, stdout: "0\n", stderr: "" };
    expect(() => installService({ config: loadConfig(configFile), node: "/n", cli: "/c", user: "root", unitDir: dir.path, start: true, run })).toThrow(
      /systemctl daemon-reload failed: System has not been booted with systemd \(the unit is written at .*tidemark\.service\)/,
    );
  });

  it("refuses an unknown action and a missing unit folder", async () => {
    const bad = await tidemark(["service", "uninstall", "--config", configFile]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/takes `install` or `print`/);
    const missing = await tidemark(["service", "install", "--config", configFile, "--unit-dir", join(dir.path, "nope"), "--no-start", "--user", "root"]);
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/does not exist: is this a systemd host\?/);
  });
});
