// task's wait before --quiesce (agentReady) looked twice at the state lock:
// another command's own agent held it at the first look, and `tidemark run`
// at the second (that command ended, the service started). The command then
// refused with "in use by tidemark run; stop it first" instead of waiting for
// the agent it wanted.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it, vi } from "vitest";
import type * as CommandAgentWait from "../../agent/command-agent-wait.ts";
import { agentReady } from "../../agent/commands/operate.ts";
import { loadConfig } from "../../agent/config.ts";
import { tempDir } from "../support/tree.ts";

/** Runs just before each look for another command's agent (the second look at the lock). */
const beforeSecondLook = vi.hoisted(() => ({ hook: undefined as (() => Promise<void>) | undefined }));
/** Runs just after a look for another command's agent that found none. */
const afterNoneFound = vi.hoisted(() => ({ hook: undefined as (() => Promise<void>) | undefined }));
vi.mock("../../agent/command-agent-wait.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof CommandAgentWait>();
  return {
    ...actual,
    commandAgentGone: async (...args: Parameters<typeof actual.commandAgentGone>) => {
      const hook = beforeSecondLook.hook;
      beforeSecondLook.hook = undefined;
      await hook?.();
      const gone = await actual.commandAgentGone(...args);
      const after = afterNoneFound.hook;
      if (!gone && after) {
        afterNoneFound.hook = undefined;
        await after();
      }
      return gone;
    },
  };
});

const LOCK_MODULE = fileURLToPath(new URL("../../agent/state-lock.ts", import.meta.url));
const CONTROL_MODULE = fileURLToPath(new URL("../../agent/control.ts", import.meta.url));

let child: ChildProcess | undefined;
let dir: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  const running = child;
  child = undefined;
  if (running && running.exitCode === null && running.signalCode === null) {
    const exited = new Promise((resolve) => running.once("exit", resolve));
    running.kill("SIGKILL");
    await exited;
  }
  dir?.remove();
  dir = undefined;
});

it("task's wait before --quiesce waits for `tidemark run` that took the lock from another command's agent between its two looks", async () => {
  dir = tempDir("tidemark-command-race-");
  mkdirSync(join(dir.path, "src"));
  const file = join(dir.path, "tidemark.config.json");
  writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "db", path: "src" }] }));
  const config = loadConfig(file);
  const stateDir = JSON.stringify(config.stateDir);
  // verify's own agent (no socket yet); on SIGUSR2 it ends and the service's agent takes the lock, its socket listening
  // a moment later.
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; const { startControlServer, controlSocketPath } = await import(${JSON.stringify(CONTROL_MODULE)}); let lock = acquireStateLock(${stateDir}, "tidemark verify"); process.once("SIGUSR2", () => { lock.release(); lock = acquireStateLock(${stateDir}, "tidemark run"); process.stdout.write("swapped\\n"); setTimeout(() => void startControlServer(controlSocketPath(${stateDir}), { "/task": async () => ({}) }), 300); }); process.stdout.write("ready\\n"); setInterval(() => {}, 1000);`;
  const both = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  child = both;
  const said = (word: string) =>
    new Promise<void>((resolve, reject) => {
      both.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes(word) && resolve());
      both.once("exit", (code) => reject(new Error(`the stand-in agent exited with ${code}`)));
    });
  await said("ready");
  beforeSecondLook.hook = async () => {
    const swapped = said("swapped");
    both.kill("SIGUSR2");
    await swapped;
  };
  const waits = await agentReady(config, true);
  expect(waits.until).toBeGreaterThanOrEqual(waits.starting);
  expect(beforeSecondLook.hook).toBeUndefined();
});

it("task's wait before --quiesce waits for another command's agent that took the lock just after its look found none", async () => {
  dir = tempDir("tidemark-command-race-");
  mkdirSync(join(dir.path, "src"));
  const file = join(dir.path, "tidemark.config.json");
  writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "db", path: "src" }] }));
  const config = loadConfig(file);
  // cron's second `tidemark task`: its own agent takes the lock between this command's look and its reading of the owner,
  // and ends a moment later.
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; const lock = acquireStateLock(${JSON.stringify(config.stateDir)}, "tidemark task"); process.stdout.write("locked\\n"); setTimeout(() => { lock.release(); process.exit(0); }, 500);`;
  afterNoneFound.hook = async () => {
    const other = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    child = other;
    await new Promise<void>((resolve, reject) => {
      other.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("locked") && resolve());
      other.once("exit", (code) => reject(new Error(`the stand-in agent exited with ${code}`)));
    });
  };
  // Refused at once ("in use by `tidemark task`") before; now waited for until it ended.
  await agentReady(config, true);
  expect(afterNoneFound.hook).toBeUndefined();
});
