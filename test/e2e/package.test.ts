// tidemark as a source host gets it: `npm pack`, then `npm install -g` of the
// tarball with production dependencies only, then the installed `tidemark`
// bin runs the compiled JavaScript (Node does not strip types under
// node_modules): --version, --help, local, run, task, restore, service print.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { runProcess, type CliResult } from "../support/cli.ts";
import { eventually } from "../support/local-cloud.ts";
import { pictureOfSource, tempDir } from "../support/tree.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { name: string; version: string; dependencies: Record<string, string>; devDependencies: Record<string, string> };

/**
 * The environment of every npm and tidemark child: this Node first on PATH (the bin's `#!/usr/bin/env node`
 * and npm find it), and none of the npm_* variables `npm test` sets, which would steer the inner npm.
 */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.toLowerCase().startsWith("npm_") && name !== "TIDEMARK_CONFIG") env[name] = value;
  env.PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ""}`;
  return env;
}

const npmVersion = spawnSync("npm", ["--version"], { env: childEnv(), encoding: "utf8" });
const noNpm = npmVersion.status !== 0 ? `npm is not runnable here (${npmVersion.error?.message ?? npmVersion.stderr.trim()}), so nothing can be packed` : undefined;

/** The temp folder holding the tarball, the install prefix and the test's own files; made by beforeAll. */
let work: ReturnType<typeof tempDir>;
const installed = () => join(work.path, "prefix", "lib", "node_modules", pkg.name);
const bin = () => join(work.path, "prefix", "bin", "tidemark");

function npm(args: string[], cwd: string): Promise<CliResult> {
  return runProcess("npm", args, { env: childEnv(), cwd, timeoutMs: 240_000 });
}

function installedTidemark(args: string[]): Promise<CliResult> {
  return runProcess(bin(), args, { env: childEnv(), cwd: work.path });
}

/** Every file under a folder, relative to it. */
function filesUnder(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1));
}

/** The packages the compiled code imports (bare specifiers, node: built-ins left out). */
function packagesImported(dir: string): Set<string> {
  const names = new Set<string>();
  for (const file of filesUnder(dir).filter((f) => f.endsWith(".js"))) {
    const text = readFileSync(join(dir, file), "utf8");
    // Not a "from" that is itself a string (a header name in a list): `"from", "keep-alive"` imports nothing.
    for (const match of text.matchAll(/(?:(?<!["'])\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)"([^"./][^"]*)"/g)) {
      const specifier = match[1] ?? "";
      if (specifier.startsWith("node:")) continue;
      const parts = specifier.split("/");
      names.add(specifier.startsWith("@") ? parts.slice(0, 2).join("/") : (parts[0] ?? specifier));
    }
  }
  return names;
}

describe.skipIf(noNpm !== undefined)(`the packed tidemark, installed with production dependencies only${noNpm ? ` (skipped: ${noNpm})` : ""}`, () => {
  beforeAll(async () => {
    work = tempDir("tidemark-package-");
    const packed = await npm(["pack", "--pack-destination", work.path, "--no-audit", "--no-fund"], ROOT);
    expect(packed.code, packed.stderr).toBe(0);
    const tarball = join(work.path, `${pkg.name}-${pkg.version}.tgz`);
    expect(existsSync(tarball)).toBe(true);
    // --prefer-offline: the dependencies come from npm's cache when it holds them (CI just ran `npm ci`).
    const install = await npm(["install", "--global", "--prefix", join(work.path, "prefix"), "--omit=dev", "--prefer-offline", "--no-audit", "--no-fund", tarball], work.path);
    expect(install.code, install.stderr).toBe(0);
  }, 480_000);

  afterAll(() => work.remove());

  it("holds the compiled JavaScript and no TypeScript source, and none of the development toolchain", () => {
    const files = filesUnder(installed()).filter((f) => !f.startsWith("node_modules/"));
    expect(files).toContain("agent/bin/tidemark.js");
    expect(files).toContain("dist/agent/cli.js");
    expect(files).toContain("dist/lambdas/local/emulator.js");
    expect(files.filter((f) => f.endsWith(".ts"))).toEqual([]);
    expect(files.filter((f) => /^(test|infra|bench)\//.test(f))).toEqual([]);

    const modules = join(installed(), "node_modules");
    for (const dev of ["aws-cdk-lib", "aws-cdk", "constructs", "cdk-nag", "vitest", "typescript", "typescript-eslint", "esbuild", "eslint", "@types/node", "@types/aws-lambda"]) {
      expect(existsSync(join(modules, dev)), `${dev} installed`).toBe(false);
    }
    // What the compiled code imports is a production dependency, and installed.
    const imported = [...packagesImported(join(installed(), "dist"))].sort();
    expect(imported).toContain("@aws-sdk/client-sqs");
    for (const name of imported) {
      expect(Object.keys(pkg.dependencies), `${name} is imported at run time`).toContain(name);
      expect(existsSync(join(modules, name, "package.json")), `${name} installed`).toBe(true);
    }
  });

  it("answers --version with the package's version and --help with the commands", async () => {
    const version = await installedTidemark(["--version"]);
    expect(version).toEqual({ code: 0, stdout: `tidemark ${pkg.version}\n`, stderr: "" });
    const help = await installedTidemark(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: tidemark <command> [options]");
    for (const command of ["local", "run", "task", "restore", "service", "doctor"]) expect(help.stdout).toMatch(new RegExp(`^ {2}${command} `, "m"));
  });

  it("runs the local cloud and an agent, takes a snapshot at a marker, restores it, and its service unit runs the installed CLI", async () => {
    const source = join(work.path, "docs");
    mkdirSync(join(source, "sub"), { recursive: true });
    writeFileSync(join(source, "a.txt"), "first file");
    writeFileSync(join(source, "sub", "b.txt"), "second file, one folder down");
    const state = join(work.path, "state");

    const local = spawn(bin(), ["local", "--port", "0", "--state", state], { env: childEnv(), stdio: ["ignore", "pipe", "pipe"] });
    const agent: { child?: ReturnType<typeof spawn> } = {};
    let localOut = "";
    let localErr = "";
    local.stdout.setEncoding("utf8").on("data", (chunk: string) => (localOut += chunk));
    local.stderr.setEncoding("utf8").on("data", (chunk: string) => (localErr += chunk));
    const stopped = (child: ReturnType<typeof spawn>) =>
      new Promise<number | null>((resolve) => {
        if (child.exitCode !== null) resolve(child.exitCode);
        else {
          child.once("exit", (code) => resolve(code));
          child.kill("SIGINT");
        }
      });
    try {
      await eventually(async () => {
        if (local.exitCode !== null) throw new Error(`tidemark local exited with ${local.exitCode}: ${localErr}`);
        expect(localOut).toContain("Press Ctrl-C to stop.");
      }, 60_000, 100);
      const field = (name: string) => new RegExp(`^ {2}${name} +(\\S+)$`, "m").exec(localOut)?.[1] ?? "";
      const configFile = field("config");
      const config = JSON.parse(readFileSync(configFile, "utf8")) as { sets: unknown[] };
      writeFileSync(configFile, JSON.stringify({ ...config, sets: [{ name: "docs", path: source }] }));

      agent.child = spawn(bin(), ["run", "--config", configFile], { env: childEnv(), stdio: ["ignore", "ignore", "pipe"] });
      let runErr = "";
      agent.child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (runErr += chunk));
      const s3 = makeS3Client({ region: "us-east-1", endpoint: field("endpoint") });
      try {
        await eventually(async () => {
          if (agent.child?.exitCode !== null) throw new Error(`tidemark run exited with ${String(agent.child?.exitCode)}: ${runErr}`);
          const object = await s3.send(new GetObjectCommand({ Bucket: field("bucket"), Key: "data/docs/sub/b.txt" }));
          expect(await object.Body?.transformToString()).toBe("second file, one folder down");
        });
      } finally {
        s3.destroy();
      }

      const task = await installedTidemark(["task", "docs", "--label", "packaged", "--wait", "--json", "--config", configFile]);
      expect(task.stderr).toBe("");
      expect(task.code).toBe(0);
      const { result } = JSON.parse(task.stdout) as { result: { status: string } };
      expect(result.status).toBe("succeeded");

      const to = join(work.path, "restored");
      const restore = await installedTidemark(["restore", "docs", "--snapshot", "latest", "--to", to, "--json", "--config", configFile]);
      expect(restore.stderr).toBe("");
      expect(restore.code).toBe(0);
      expect(await pictureOfSource(to, { microseconds: true })).toEqual(await pictureOfSource(source, { microseconds: true }));

      // The unit `tidemark service install` writes starts this installation's compiled CLI with this Node.
      const unit = await installedTidemark(["service", "print", "--config", configFile]);
      expect(unit.code).toBe(0);
      const execStart = /^ExecStart=(\S+) (\S+) run /m.exec(unit.stdout);
      expect(execStart?.[1]).toBe(process.execPath);
      expect(execStart?.[2]).toBe(join(installed(), "dist", "agent", "cli.js"));

      expect(await stopped(agent.child)).toBe(0);
      expect(await stopped(local)).toBe(0);
    } finally {
      if (agent.child && agent.child.exitCode === null) agent.child.kill("SIGKILL");
      if (local.exitCode === null) local.kill("SIGKILL");
    }
  });
});
