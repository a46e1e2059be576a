// With no `tidemark run`, a command's own agent serves only that command. A
// second command meanwhile (cron's `task db1` and `task db2`, `drill` sending
// its report while `verify` runs) failed at once, and a passed drill's report
// was lost. It now waits, bounded, for that agent to end, then starts its own.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it, vi } from "vitest";
import { CommandAgentWaitTimeoutError, commandWaits } from "../../agent/command-agent-wait.ts";
import { agentReady, operate } from "../../agent/commands/operate.ts";
import { loadConfig, type AgentConfig } from "../../agent/config.ts";
import { acquireStateLock, lockOwner, StateLockedError } from "../../agent/state-lock.ts";
import { tempDir } from "../support/tree.ts";

const startAgent = vi.hoisted(() => vi.fn());
vi.mock("../../agent/runtime.ts", () => ({ startAgent }));

const LOCK_MODULE = fileURLToPath(new URL("../../agent/state-lock.ts", import.meta.url));
const CONTROL_MODULE = fileURLToPath(new URL("../../agent/control.ts", import.meta.url));
const COMMAND_AGENT_MODULE = fileURLToPath(new URL("../../agent/command-agent.ts", import.meta.url));

let child: ChildProcess | undefined;
let dir: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  if (child) await ended(child);
  child = undefined;
  dir?.remove();
  dir = undefined;
  startAgent.mockReset();
});

async function ended(running: ChildProcess): Promise<void> {
  const exited = running.exitCode !== null || running.signalCode !== null ? Promise.resolve() : new Promise((resolve) => running.once("exit", resolve));
  running.kill("SIGKILL");
  await exited;
}

function setUp(): AgentConfig {
  dir = tempDir("tidemark-command-wait-");
  mkdirSync(join(dir.path, "src"));
  const file = join(dir.path, "tidemark.config.json");
  writeFileSync(file, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "db", path: "src" }] }));
  return loadConfig(file);
}

/** Another command's own agent: takes the lock as that command and, with `socket`, refuses every request on its control socket as the real one does. */
async function commandAgent(stateDir: string, command: string, socket: boolean): Promise<ChildProcess> {
  const serve = socket
    ? `const { startControlServer, controlSocketPath } = await import(${JSON.stringify(CONTROL_MODULE)}); const { servedRoutes } = await import(${JSON.stringify(COMMAND_AGENT_MODULE)}); await startControlServer(controlSocketPath(${JSON.stringify(stateDir)}), servedRoutes(${JSON.stringify(command)}, { "/task": async () => ({}), "/drill-report": async () => ({}) }));`
    : "";
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; acquireStateLock(${JSON.stringify(stateDir)}, ${JSON.stringify(command)}); ${serve} process.stdout.write("ready\\n"); setInterval(() => {}, 1000);`;
  const started = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  child = started;
  await new Promise<void>((resolve, reject) => {
    started.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve());
    started.once("exit", (code) => reject(new Error(`the stand-in agent exited with ${code}`)));
  });
  return started;
}

/** The command's own agent, as startAgent gives it: it takes the state lock (refused while another holds it). */
function ownAgent(stateDir: string, command: string): void {
  startAgent.mockImplementation(async () => {
    const lock = acquireStateLock(stateDir, command);
    return {
      operations: () => ({}),
      agent: { drain: async () => {} },
      stop: async () => lock.release(),
    };
  });
}

/** Captures stderr; ends the holder once the command says it waits for it. */
function stderrEnding(holder: () => ChildProcess | undefined): { lines: string[]; restore: () => void } {
  const lines: string[] = [];
  const write = vi.spyOn(process.stderr, "write").mockImplementation((text) => {
    lines.push(String(text));
    const running = holder();
    if (String(text).includes("to finish with") && running) void ended(running);
    return true;
  });
  return { lines, restore: () => write.mockRestore() };
}

it("a second command, refused by the first command's agent on its socket, waits for it to end and then runs with its own", async () => {
  const config = setUp();
  const first = await commandAgent(config.stateDir, "tidemark task", true);
  ownAgent(config.stateDir, "tidemark task");
  const stderr = stderrEnding(() => first);
  try {
    const result = await operate(config, "/task", { set: "db" }, async () => ({ by: "its own agent" }), { quiet: false });
    expect(result).toEqual({ by: "its own agent" });
  } finally {
    stderr.restore();
  }
  const waited = stderr.lines.filter((line) => line.includes("to finish with"));
  expect(waited).toHaveLength(1);
  expect(waited[0]).toContain(`\`tidemark task\` (pid ${first.pid})`);
  expect(lockOwner(config.stateDir)).toBeUndefined();
});

it("a passed drill's report waits for `tidemark verify`'s own agent and is journaled by the drill's own", async () => {
  const config = setUp();
  const verify = await commandAgent(config.stateDir, "tidemark verify", true);
  const journaled: string[] = [];
  ownAgent(config.stateDir, "tidemark drill");
  const stderr = stderrEnding(() => verify);
  try {
    await operate(config, "/drill-report", { set: "db", report: {} }, async () => ({ seq: journaled.push("db") }), { quiet: false });
  } finally {
    stderr.restore();
  }
  expect(journaled).toEqual(["db"]);
});

it("task's wait before --quiesce waits for another command's lock (no socket yet) and leaves the deadlines to operate", async () => {
  const config = setUp();
  const first = await commandAgent(config.stateDir, "tidemark verify", false);
  const stderr = stderrEnding(() => first);
  try {
    const waits = await agentReady(config, false);
    expect(waits.until).toBeGreaterThanOrEqual(waits.starting);
  } finally {
    stderr.restore();
  }
  expect(lockOwner(config.stateDir)).toBeUndefined();
});

it("past the bound, fails naming the holder, that it ends by itself, and the ways on", async () => {
  const config = setUp();
  const verify = await commandAgent(config.stateDir, "tidemark verify", true);
  ownAgent(config.stateDir, "tidemark task");
  const write = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    const failed = operate(config, "/task", { set: "db" }, async () => ({}), { quiet: true, waits: commandWaits(300) });
    await expect(failed).rejects.toBeInstanceOf(CommandAgentWaitTimeoutError);
    await expect(failed).rejects.toThrow(`\`tidemark verify\` (pid ${verify.pid})`);
    await expect(failed).rejects.toThrow("ends by itself once its work is done: run this again then, or keep `tidemark run` running");
    // quiet: no waiting line.
    expect(write).not.toHaveBeenCalled();
  } finally {
    write.mockRestore();
  }
  expect(startAgent).not.toHaveBeenCalled();
});

it("refuses at once another command's lock whose start cannot be told, saying it ends by itself rather than to stop it", async () => {
  const config = setUp();
  const other = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
  child = other;
  mkdirSync(config.stateDir, { recursive: true });
  // A host without /proc: the lock has no start, so a reused pid cannot be told from the command's agent.
  writeFileSync(join(config.stateDir, "tidemark.lock"), `${JSON.stringify({ pid: other.pid, host: hostname(), command: "tidemark verify" })}\n`);
  const refused = agentReady(config, true);
  await expect(refused).rejects.toBeInstanceOf(StateLockedError);
  await expect(refused).rejects.toThrow(`is in use by \`tidemark verify\` (pid ${other.pid}), whose own agent ends by itself once its work is done: run this again then, or keep \`tidemark run\` running`);
  await expect(refused).rejects.not.toThrow("stop it first");
});

it("after a command stopped something for its work, leaves at most a minute of waiting, never more than it had", async () => {
  const { shortenedWaits } = await import("../../agent/command-agent-wait.ts");
  const now = 1_000_000;
  const fresh = commandWaits(undefined, now);
  expect(fresh.until - now).toBe(300_000);
  const after = shortenedWaits(fresh, undefined, now);
  expect(after).toEqual({ until: now + 60_000, starting: now + 60_000 });
  // Little left already: it stays what it was.
  const late = shortenedWaits({ until: now + 5_000, starting: now + 2_000 }, undefined, now);
  expect(late).toEqual({ until: now + 5_000, starting: now + 2_000 });
  // The fresh deadlines are not changed in place.
  expect(fresh.until - now).toBe(300_000);
});

it("another command's agent refuses and ends, and `tidemark run` takes the state folder before the lock is looked at: the command asks that agent", async () => {
  const config = setUp();
  const stateDir = JSON.stringify(config.stateDir);
  // One process plays both: verify's own agent refuses the first request, releasing its lock to a starting `tidemark
  // run` before its answer leaves; the next request is answered, as the service's agent once its socket listens.
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; const { startControlServer, controlSocketPath } = await import(${JSON.stringify(CONTROL_MODULE)}); const { servedRoutes } = await import(${JSON.stringify(COMMAND_AGENT_MODULE)}); let lock = acquireStateLock(${stateDir}, "tidemark verify"); const refuse = servedRoutes("tidemark verify", { "/task": async () => ({}) })["/task"]; let refused = false; await startControlServer(controlSocketPath(${stateDir}), { "/task": async (body, progress) => { if (refused) return { by: "the service's agent" }; refused = true; lock.release(); lock = acquireStateLock(${stateDir}, "tidemark run"); return refuse(body, progress); } }); process.stdout.write("ready\\n"); setInterval(() => {}, 1000);`;
  const both = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  child = both;
  await new Promise<void>((resolve, reject) => {
    both.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve());
    both.once("exit", (code) => reject(new Error(`the stand-in agent exited with ${code}`)));
  });
  const result = await operate(config, "/task", { set: "db" }, () => Promise.reject(new Error("the command ran its own agent")), { quiet: true });
  expect(result).toEqual({ by: "the service's agent" });
  expect(startAgent).not.toHaveBeenCalled();
});
