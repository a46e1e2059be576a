// Runs the tidemark CLI as a user would: a child process, exit code and output.

import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const CLI = fileURLToPath(new URL("../../agent/cli.ts", import.meta.url));

/**
 * The CLI's environment: this process's, with Node's compile cache on from the start (in the folder cli.ts turns on,
 * as the installed bin does before cli.ts loads). Started as `node cli.ts`, the cache came on only after cli.ts and
 * its imports were read, and stripping their types loaded Node's TypeScript compiler in every child (~0.2 s of CPU
 * each, a few hundred children per run). A test's own `env` wins: undefined leaves a variable out.
 */
function cliEnv(env: NodeJS.ProcessEnv | undefined): NodeJS.ProcessEnv {
  return { NODE_COMPILE_CACHE: join(tmpdir(), "node-compile-cache"), ...process.env, ...env };
}

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a process to completion, collecting its output; asynchronous so an emulator in the test process keeps serving.
 * Killed after `timeoutMs` (default just under the test's own limit in vitest.config.ts, so a hang shows its output).
 */
export function runProcess(command: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { env: options.env ?? process.env, cwd: options.cwd, stdio: ["ignore", "pipe", "pipe"], timeout: options.timeoutMs ?? 110_000 });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Runs one command to completion. Asynchronous on purpose: a test's emulator
 * lives in the test process, and a blocking spawn would starve it.
 */
export function tidemark(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Promise<CliResult> {
  return runProcess(process.execPath, [CLI, ...args], { env: cliEnv(options.env), ...(options.cwd ? { cwd: options.cwd } : {}) });
}

/** Starts a long-running CLI command (run, local) in the background. */
export function spawnTidemark(args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string } = {}) {
  return spawn(process.execPath, [CLI, ...args], {
    env: cliEnv(options.env),
    cwd: options.cwd,
    stdio: ["ignore", "pipe", "pipe"],
  });
}
