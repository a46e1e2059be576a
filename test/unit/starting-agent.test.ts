// `tidemark task` right after `tidemark run` started (a service restarted)
// found no control socket yet, started an agent of its own, and the state
// lock refused it ("in use by tidemark run; stop it first"). A command now
// waits for the starting agent's socket, starts its own only when no process
// holds the lock, and says so when the holder never answers.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { operate } from "../../agent/commands/operate.ts";
import { loadConfig, type AgentConfig } from "../../agent/config.ts";
import { controlSocketPath, startControlServer } from "../../agent/control.ts";
import { AgentStartTimeoutError, startingAgentAnswers } from "../../agent/starting-agent.ts";
import { StateLockedError } from "../../agent/state-lock.ts";
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

/**
 * A process that takes the state lock of `dir` as `command`, says so, and opens the control socket (its /task answers)
 * after `listenAfterMs`, or on SIGUSR2 when that is "on-signal", or never when not given.
 */
async function startingAgent(dir: string, listenAfterMs?: number | "on-signal", command = "tidemark run"): Promise<ChildProcess> {
  const open = `const { startControlServer, controlSocketPath } = await import(${JSON.stringify(CONTROL_MODULE)}); const listen = () => void startControlServer(controlSocketPath(${JSON.stringify(dir)}), { "/task": async () => ({ by: "the starting agent" }) });`;
  const listen = listenAfterMs === undefined ? "" : listenAfterMs === "on-signal" ? `${open} process.once("SIGUSR2", listen);` : `${open} setTimeout(listen, ${listenAfterMs});`;
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; ${listen} acquireStateLock(${JSON.stringify(dir)}, ${JSON.stringify(command)}); process.stdout.write("locked\\n"); setInterval(() => {}, 1000);`;
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

it("waits for a starting agent's control socket, saying so once, and says it answers", async () => {
  const dir = stateDir();
  const child = await startingAgent(dir, "on-signal");
  const waits: number[] = [];
  // The socket opens only once the wait began: the wait is what found it.
  const answers = await startingAgentAnswers(dir, { deadline: Date.now() + 30_000, onWait: (owner) => waits.push(owner.pid) && child.kill("SIGUSR2") });
  expect(answers).toBe(true);
  expect(waits).toEqual([child.pid]);
});

it("says no agent answers at once when no process holds the lock, so the command starts its own", async () => {
  const dir = stateDir();
  expect(await startingAgentAnswers(dir, { deadline: Date.now() + 30_000 })).toBe(false);
  // A lock left by a killed agent is no agent either.
  const killed = await startingAgent(dir);
  killed.kill("SIGKILL");
  await new Promise((resolve) => killed.once("exit", resolve));
  expect(await startingAgentAnswers(dir, { deadline: Date.now() + 30_000 })).toBe(false);
});

it("fails naming the state folder when the lock's holder never opens its socket", async () => {
  const dir = stateDir();
  const child = await startingAgent(dir);
  await expect(startingAgentAnswers(dir, { deadline: Date.now() + 300 })).rejects.toThrow(AgentStartTimeoutError);
  // Its owner and the way out are named.
  await expect(startingAgentAnswers(dir, { deadline: Date.now() + 300 })).rejects.toThrow(`the agent starting on ${dir} (tidemark run, pid ${child.pid} on ${hostname()})`);
  await expect(startingAgentAnswers(dir, { deadline: Date.now() + 300 })).rejects.toThrow("remove it only if that process is not running");
});

it("answers for an agent already listening", async () => {
  const dir = stateDir();
  const server = await startControlServer(controlSocketPath(dir), {});
  try {
    expect(await startingAgentAnswers(dir, { deadline: Date.now() + 300 })).toBe(true);
  } finally {
    await server.close();
  }
});

/** A config whose state folder is `dir` itself, with one set "db". */
function configIn(dir: string): AgentConfig {
  mkdirSync(join(dir, "src"), { recursive: true });
  const file = join(dir, "tidemark.config.json");
  writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: ".", sets: [{ name: "db", path: "src" }] }));
  return loadConfig(file);
}

it("hands a command's request to an agent that was still starting, instead of starting a second one", async () => {
  const config = configIn(stateDir());
  await startingAgent(config.stateDir, 500);
  const result = await operate(config, "/task", { set: "db" }, () => Promise.reject(new Error("a second agent was started")), { quiet: true });
  expect(result).toEqual({ by: "the starting agent" });
});

it("does not wait for a lock this host cannot judge or another command's own agent: the start refuses at once, naming the holder", async () => {
  const dir = stateDir();
  // Another host's agent (a container recreated under a new hostname): its socket can never answer here.
  writeFileSync(join(dir, "tidemark.lock"), `${JSON.stringify({ pid: process.pid, host: "other-host", command: "tidemark run", started: "1" })}\n`);
  expect(await startingAgentAnswers(dir, { deadline: Date.now() + 60_000, onWait: () => expect.fail("waited for another host's agent") })).toBe(false);
  const config = configIn(dir);
  await expect(operate(config, "/task", { set: "db" }, () => Promise.reject(new Error("not reached")), { quiet: true })).rejects.toThrow(StateLockedError);
  // A live process whose start is unknown (a pid that may be reused) is not waited for either.
  writeFileSync(join(dir, "tidemark.lock"), `${JSON.stringify({ pid: process.ppid, host: hostname(), command: "tidemark run" })}\n`);
  expect(await startingAgentAnswers(dir, { deadline: Date.now() + 60_000 })).toBe(false);
});

it("does not wait for the agent another command started for its own work", async () => {
  const dir = stateDir();
  await startingAgent(dir, undefined, "tidemark verify");
  expect(await startingAgentAnswers(dir, { deadline: Date.now() + 60_000, onWait: () => expect.fail("waited for a command's own agent") })).toBe(false);
});
