// Shell commands around a task marker: --quiesce and --resume (run by
// `tidemark task`), --on-queue and --on-transmit (run by the agent). Each runs
// with `sh -c`, the marker's context in its environment, and a time limit.

import { spawn } from "node:child_process";

export interface HookResult {
  readonly command: string;
  /** Exit code; null when the command was killed (signal or time limit). */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  /** The last lines of what it printed (stdout and stderr together). */
  readonly output: string;
  readonly ms: number;
}

export interface HookOptions {
  /** Added to the environment: TIDEMARK_SET, TIDEMARK_TASK_ID ... */
  readonly env?: Record<string, string>;
  /** @default 10 minutes */
  readonly timeoutMs?: number;
  /** Passes the command's output through (the CLI); otherwise it is only kept. */
  readonly echo?: (chunk: Buffer) => void;
  /** Where the command runs. @default this process's working folder */
  readonly cwd?: string;
}

/** Output kept per hook. */
const KEEP_OUTPUT_CHARS = 4096;

export function hookSucceeded(result: HookResult): boolean {
  return result.code === 0;
}

export function describeHook(name: string, result: HookResult): string {
  const how = result.timedOut ? "timed out" : result.code === null ? `was killed (${result.signal ?? "signal"})` : `exited with ${result.code}`;
  const tail = result.output.trim().split("\n").slice(-3).join(" | ");
  return `${name} command \`${result.command}\` ${how}${tail ? `: ${tail}` : ""}`;
}

export function runHook(command: string, options: HookOptions = {}): Promise<HookResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn("sh", ["-c", command], { env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"], ...(options.cwd ? { cwd: options.cwd } : {}) });
    let output = "";
    let timedOut = false;
    const keep = (chunk: Buffer) => {
      options.echo?.(chunk);
      output = (output + chunk.toString("utf8")).slice(-KEEP_OUTPUT_CHARS);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs ?? 10 * 60_000);
    const done = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      resolve({ command, code, signal, timedOut, output, ms: Date.now() - started });
    };
    child.once("error", (error) => {
      output += String(error);
      done(127, null);
    });
    child.once("close", done);
  });
}
