// `tidemark task` right after `tidemark run` started (a service restarted)
// found no control socket yet, started an agent of its own, and the state
// lock refused it ("in use by tidemark run; stop it first"). A command now
// waits for the starting agent's socket, starts its own only when no process
// holds the lock, and says so when the holder never answers.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { operate } from "../../agent/commands/operate.ts";
import { loadConfig } from "../../agent/config.ts";
import { controlSocketPath, startControlServer } from "../../agent/control.ts";
import { AgentNotAnsweringError, startingAgentAnswers } from "../../agent/starting-agent.ts";
import { tempDir } from "../support/tree.ts";

const LOCK_MODULE = fileURLToPath(new URL("../../agent/state-lock.ts", import.meta.url));
const CONTROL_MODULE = fileURLToPath(new URL("../../agent/control.ts", import.meta.url));

let children: ChildProcess[] = [];
let dirs: ReturnType<typeof tempDir>[] = [];

afterEach(async () => {
  for (const child of children) {
    child.kill("SIGKILL");
    if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once("exit", resolve));
  }
  children = [];
  for (const dir of dirs) dir.remove();
  dirs = [];
});

/** A process that takes the state lock of `dir`, says so, and after `listenAfterMs` (if given) opens the control socket (its /task answers). */
async function startingAgent(dir: string, listenAfterMs?: number): Promise<ChildProcess> {
  const listen =
    listenAfterMs === undefined
      ? ""
      : `const { startControlServer, controlSocketPath } = await import(${JSON.stringify(CONTROL_MODULE)}); setTimeout(() => void startControlServer(controlSocketPath(${JSON.stringify(dir)}), { "/task": async () => ({ by: "the starting agent" }) }), ${listenAfterMs});`;
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; acquireStateLock(${JSON.stringify(dir)}, "tidemark run"); process.stdout.write("locked\\n"); ${listen} setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("locked") && resolve());
    child.once("exit", (code) => reject(new Error(`the stand-in agent exited with ${code}`)));
  });
  return child;
}

function stateDir(): string {
  const dir = tempDir("tidemark-starting-");
  dirs.push(dir);
  return dir.path;
}

it("waits for a starting agent's control socket and says it answers", async () => {
  const dir = stateDir();
  await startingAgent(dir, 500);
  expect(await startingAgentAnswers(dir, 30_000)).toBe(true);
});

it("says no agent answers at once when no process holds the lock, so the command starts its own", async () => {
  const dir = stateDir();
  expect(await startingAgentAnswers(dir, 30_000)).toBe(false);
  // A lock left by a killed agent is no agent either.
  const killed = await startingAgent(dir);
  killed.kill("SIGKILL");
  await new Promise((resolve) => killed.once("exit", resolve));
  expect(await startingAgentAnswers(dir, 30_000)).toBe(false);
});

it("fails naming the state folder when the lock's holder never opens its socket", async () => {
  const dir = stateDir();
  await startingAgent(dir);
  await expect(startingAgentAnswers(dir, 300)).rejects.toThrow(AgentNotAnsweringError);
  await expect(startingAgentAnswers(dir, 300)).rejects.toThrow(`an agent holds the state folder ${dir}`);
});

it("answers for an agent already listening", async () => {
  const dir = stateDir();
  const server = await startControlServer(controlSocketPath(dir), {});
  try {
    expect(await startingAgentAnswers(dir, 300)).toBe(true);
  } finally {
    await server.close();
  }
});

it("hands a command's request to an agent that was still starting, instead of starting a second one", async () => {
  const dir = stateDir();
  mkdirSync(join(dir, "src"));
  const file = join(dir, "tidemark.config.json");
  writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "db", path: "src" }] }));
  const config = loadConfig(file);
  await startingAgent(config.stateDir, 500);
  const result = await operate(config, "/task", { set: "db" }, () => Promise.reject(new Error("a second agent was started")), { quiet: true });
  expect(result).toEqual({ by: "the starting agent" });
});
