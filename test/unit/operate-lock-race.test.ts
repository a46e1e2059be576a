// A command found no agent and the lock free, then an agent starting (a
// service restarted) took the lock before the command's own start: the
// command failed with "in use by tidemark run; stop it first". It now goes
// back to waiting for that agent, once, and hands it the request.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it, vi } from "vitest";
import { operate } from "../../agent/commands/operate.ts";
import { loadConfig } from "../../agent/config.ts";
import { acquireStateLock, StateLockedError } from "../../agent/state-lock.ts";
import { AgentStartTimeoutError } from "../../agent/starting-agent.ts";
import { tempDir } from "../support/tree.ts";

const startAgent = vi.hoisted(() => vi.fn());
vi.mock("../../agent/runtime.ts", () => ({ startAgent }));

const LOCK_MODULE = fileURLToPath(new URL("../../agent/state-lock.ts", import.meta.url));
const CONTROL_MODULE = fileURLToPath(new URL("../../agent/control.ts", import.meta.url));

let child: ChildProcess | undefined;
let dir: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  if (child) {
    const running = child;
    child = undefined;
    running.kill("SIGKILL");
    if (running.exitCode === null && running.signalCode === null) await new Promise((resolve) => running.once("exit", resolve));
  }
  dir?.remove();
  dir = undefined;
  startAgent.mockReset();
});

/** The service's agent: takes the lock, says so, and opens its control socket on SIGUSR2. */
async function serviceAgent(stateDir: string): Promise<ChildProcess> {
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; const { startControlServer, controlSocketPath } = await import(${JSON.stringify(CONTROL_MODULE)}); process.once("SIGUSR2", () => void startControlServer(controlSocketPath(${JSON.stringify(stateDir)}), { "/task": async () => ({ by: "the service's agent" }) })); acquireStateLock(${JSON.stringify(stateDir)}, "tidemark run"); process.stdout.write("locked\\n"); setInterval(() => {}, 1000);`;
  const started = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  child = started;
  await new Promise<void>((resolve, reject) => {
    started.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("locked") && resolve());
    started.once("exit", (code) => reject(new Error(`the stand-in agent exited with ${code}`)));
  });
  return started;
}

it("waits again for the agent that took the lock just before the command's own start, and hands it the request", async () => {
  dir = tempDir("tidemark-lock-race-");
  mkdirSync(join(dir.path, "src"));
  const file = join(dir.path, "tidemark.config.json");
  writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "db", path: "src" }] }));
  const config = loadConfig(file);
  let agent: ChildProcess | undefined;
  // The command's start loses the race: the service's agent took the lock first, as the real start would find.
  startAgent.mockImplementationOnce(async () => {
    agent = await serviceAgent(config.stateDir);
    return acquireStateLock(config.stateDir, "tidemark task");
  });
  const stderr: string[] = [];
  const write = vi.spyOn(process.stderr, "write").mockImplementation((text) => {
    stderr.push(String(text));
    // Told it is waited for: the service's agent now listens.
    if (String(text).includes("waiting up to")) agent?.kill("SIGUSR2");
    return true;
  });
  try {
    const result = await operate(config, "/task", { set: "db" }, () => Promise.reject(new Error("the command ran its own agent")), { quiet: false });
    expect(result).toEqual({ by: "the service's agent" });
  } finally {
    write.mockRestore();
  }
  expect(startAgent).toHaveBeenCalledTimes(1);
  expect(stderr.filter((line) => line.includes("waiting up to"))).toHaveLength(1);
  // The command's own start was refused by the lock: the race was lost, and waited out.
  await expect(startAgent.mock.results[0]?.value).rejects.toBeInstanceOf(StateLockedError);
});

it("past the deadline after that race, says what happened, not that a control socket answered and was gone", async () => {
  dir = tempDir("tidemark-lock-race-");
  mkdirSync(join(dir.path, "src"));
  const file = join(dir.path, "tidemark.config.json");
  writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "db", path: "src" }] }));
  const config = loadConfig(file);
  startAgent.mockImplementationOnce(async () => {
    await serviceAgent(config.stateDir);
    return acquireStateLock(config.stateDir, "tidemark task");
  });
  // The starting deadline already passed: the pass after the race is the last.
  const failed = operate(config, "/task", { set: "db" }, () => Promise.reject(new Error("the command ran its own agent")), { quiet: true, waits: { until: Date.now() + 60_000, starting: Date.now() } });
  await expect(failed).rejects.toBeInstanceOf(AgentStartTimeoutError);
  await expect(failed).rejects.toThrow("an agent took the state lock just before this command's own start, then did not take the request");
  await expect(failed).rejects.not.toThrow("answered, then was gone");
});
