// `tidemark local` as a user runs it: a child process on port 0, started once
// its banner says so, stopped with Ctrl-C. Children a test left running are
// killed by stopLocals() (call it after each test).

import { expect } from "vitest";
import { spawnTidemark } from "./cli.ts";
import { eventually } from "./local-cloud.ts";

export type Child = ReturnType<typeof spawnTidemark>;

export interface StartedLocal {
  readonly child: Child;
  readonly endpoint: string;
  readonly bucket: string;
  readonly config: string;
  /** The rest of the banner's line that starts with `name` ("versions", ...). */
  readonly line: (name: string) => string;
  readonly stdout: () => string;
  readonly stderr: () => string;
}

const children: Child[] = [];

export function stopLocals(): void {
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill("SIGKILL");
}

/** Starts `tidemark local` and waits for its banner. */
export async function startLocal(args: string[]): Promise<StartedLocal> {
  const child = spawnTidemark(["local", "--port", "0", ...args]);
  children.push(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  await eventually(async () => {
    if (child.exitCode !== null) throw new Error(`tidemark local exited with ${child.exitCode}: ${stderr}`);
    expect(stdout).toContain("Press Ctrl-C to stop.");
  }, 30_000, 50).catch((error: unknown) => {
    throw new Error(`tidemark local did not start: ${String(error)}\nstdout: ${stdout}\nstderr: ${stderr}`);
  });
  const line = (name: string) => new RegExp(`^ {2}${name} +(.+)$`, "m").exec(stdout)?.[1] ?? "";
  const field = (name: string) => new RegExp(`^ {2}${name} +(\\S+)$`, "m").exec(stdout)?.[1] ?? "";
  return { child, endpoint: field("endpoint"), bucket: field("bucket"), config: field("config"), line, stdout: () => stdout, stderr: () => stderr };
}

/** Ctrl-C: resolves with the exit code. */
export function stopLocal(child: Child): Promise<number | null> {
  return new Promise((resolve) => {
    child.once("exit", (code) => resolve(code));
    child.kill("SIGINT");
  });
}
