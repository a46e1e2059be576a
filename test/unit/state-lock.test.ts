// One process per state folder: a live holder refuses a second one, a dead
// one's lock (stopped or SIGKILLed) is taken over; `tidemark local` and
// `tidemark run` refuse a state folder in use before writing anything.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { agentPresence } from "../../agent/agent-presence.ts";
import { processStart } from "../../agent/process-identity.ts";
import { acquireStateLock, processRuns, StateLockedError } from "../../agent/state-lock.ts";
import { spawnTidemark, tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

const LOCK_MODULE = fileURLToPath(new URL("../../agent/state-lock.ts", import.meta.url));

/** A process holding the lock of `dir` until killed. */
async function holder(dir: string): Promise<ChildProcess> {
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; acquireStateLock(${JSON.stringify(dir)}, "test holder"); process.stdout.write("held\\n"); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("held") && resolve());
    child.once("exit", (code) => reject(new Error(`holder exited with ${code}`)));
  });
  return child;
}

const exited = (child: ChildProcess) => new Promise<void>((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve() : child.once("exit", () => resolve())));

/** Reads a child's stdout until `pattern` appears. */
function waitFor(child: ChildProcess, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      if (pattern.test(out)) resolve(out);
    });
    child.once("exit", (code) => reject(new Error(`exited with ${code} before printing ${pattern}: ${out}`)));
  });
}

describe("state folder lock", () => {
  let dir: ReturnType<typeof tempDir>;
  const children: ChildProcess[] = [];
  beforeEach(() => {
    dir = tempDir("tidemark-lock-");
  });
  afterEach(async () => {
    for (const child of children.splice(0)) {
      child.kill("SIGKILL");
      await exited(child);
    }
    dir.remove();
  });

  it("refuses a second holder in the same process until the first releases", () => {
    const lock = acquireStateLock(dir.path, "first");
    expect(() => acquireStateLock(dir.path, "second")).toThrow(StateLockedError);
    lock.release();
    expect(existsSync(lock.file)).toBe(false);
    acquireStateLock(dir.path, "third").release();
  });

  it("refuses while another process holds it, naming its pid, and takes it over once that process is SIGKILLed", async () => {
    const child = await holder(dir.path);
    children.push(child);
    expect(() => acquireStateLock(dir.path, "tidemark run")).toThrow(new RegExp(`in use by test holder \\(pid ${child.pid}\\)`));
    child.kill("SIGKILL");
    await exited(child);
    const lock = acquireStateLock(dir.path, "tidemark run");
    expect(JSON.parse(readFileSync(lock.file, "utf8"))).toMatchObject({ pid: process.pid, command: "tidemark run" });
    lock.release();
  });

  it("forgets an earlier stop's time once an agent holds the lock again: one SIGKILLed later is stopped since no known time", async () => {
    acquireStateLock(dir.path, "tidemark run").release();
    expect(await agentPresence(dir.path)).toMatchObject({ running: false, stoppedAt: expect.any(String) as string });
    const child = await holder(dir.path);
    children.push(child);
    child.kill("SIGKILL");
    await exited(child);
    // The earlier stop's time would say the changes since then went unreplicated, while the killed agent ran meanwhile.
    expect(await agentPresence(dir.path)).toEqual({ running: false });
  });

  it("takes the lock even when the earlier stop's time cannot be cleared (best effort, as its writing is), and releases it", () => {
    // A folder where the time's file should be: removing it fails (EISDIR).
    mkdirSync(join(dir.path, "tidemark.lock.released", "inside"), { recursive: true });
    const lock = acquireStateLock(dir.path, "tidemark run");
    lock.release();
    expect(existsSync(lock.file)).toBe(false);
    acquireStateLock(dir.path, "again").release();
  });

  it("takes over a lock whose process is gone, and one left half-written", async () => {
    const gone = spawn(process.execPath, ["-e", ""]);
    await exited(gone);
    writeFileSync(join(dir.path, "tidemark.lock"), JSON.stringify({ pid: gone.pid, command: "tidemark run" }));
    acquireStateLock(dir.path, "after a stop").release();
    writeFileSync(join(dir.path, "tidemark.lock"), '{"pid": 12');
    acquireStateLock(dir.path, "after a crash").release();
  });

  it("takes over a lock whose pid now belongs to another process (started at another time), and refuses the one that wrote it", async () => {
    const child = await holder(dir.path);
    children.push(child);
    const pid = child.pid ?? 0;
    const file = join(dir.path, "tidemark.lock");
    // The holder recorded its own start.
    expect(JSON.parse(readFileSync(file, "utf8"))).toMatchObject({ pid, started: processStart(pid) });
    expect(() => acquireStateLock(dir.path, "tidemark run")).toThrow(StateLockedError);
    expect(processRuns(pid, undefined, processStart(pid))).toBe(true);
    // The same pid with another start: an agent that stopped, its pid taken by this (unrelated) process since.
    writeFileSync(file, JSON.stringify({ pid, command: "tidemark run", started: `${processStart(pid)}0` }));
    expect(processRuns(pid, undefined, `${processStart(pid)}0`)).toBe(false);
    acquireStateLock(dir.path, "after a reused pid").release();
  });

  it("refuses a second `tidemark local` on the same state folder before it writes anything, and a `tidemark run` on its agent's state", async () => {
    const source = join(dir.path, "src");
    const state = join(dir.path, "state");
    mkdirSync(source);
    const first = spawnTidemark(["local", "--port", "0", "--state", state, "--source", source]);
    children.push(first);
    await waitFor(first, /Press Ctrl-C to stop/);
    const config = join(state, "tidemark.config.json");
    const before = readFileSync(config, "utf8");

    const second = await tidemark(["local", "--port", "0", "--state", state]);
    expect(second.code).toBe(1);
    expect(second.stderr).toMatch(new RegExp(`^tidemark: state folder .*state is in use by tidemark local \\(pid ${first.pid}\\)`));
    expect(readFileSync(config, "utf8")).toBe(before);

    const run = await tidemark(["run", "--config", config]);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(new RegExp(`^tidemark: state folder .*agent is in use by tidemark run \\(pid ${first.pid}\\)`));
  });
});
