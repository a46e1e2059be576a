// `tidemark local` stops with the process that started it: Ctrl-C sent to
// `npx` alone (or a killed script) must not leave it running, orphaned.

import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { PARENT_EXITED_HINT } from "../../agent/commands/local.ts";
import { CLI } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

const dir = tempDir("tidemark-local-parent-");
const pids: number[] = [];
afterEach(() => {
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  dir.remove();
});

const running = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

it("exits, releasing its state folder, when its parent is killed", async () => {
  const state = join(dir.path, "state");
  // A parent like npx: it starts `tidemark local`, says its pid, and waits.
  // Its log (stderr) goes to a file, read once it stopped.
  const logFile = join(dir.path, "local.log");
  const script = `const { spawn } = require("node:child_process");
const log = require("node:fs").openSync(${JSON.stringify(logFile)}, "w");
const child = spawn(process.execPath, ${JSON.stringify([CLI, "local", "--port", "0", "--state", state])}, { stdio: ["ignore", "inherit", log] });
process.stdout.write("child " + child.pid + "\\n");
setInterval(() => {}, 1000);`;
  const parent = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  pids.push(parent.pid ?? 0);
  let out = "";
  const child = await new Promise<number>((resolve, reject) => {
    parent.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      out += chunk;
      const pid = /child (\d+)/.exec(out);
      if (pid && out.includes("Press Ctrl-C to stop")) resolve(Number(pid[1]));
    });
    parent.once("exit", () => reject(new Error(`parent exited early: ${out}`)));
  });
  pids.push(child);
  expect(existsSync(join(state, "local.lock"))).toBe(true);

  parent.kill("SIGKILL");
  // Bounded wait: the child checks every second.
  for (let i = 0; i < 300 && running(child); i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
  expect(running(child)).toBe(false);
  expect(existsSync(join(state, "local.lock"))).toBe(false);
  // Its last line says why, and how to keep it running.
  const stopped = readFileSync(logFile, "utf8").split("\n").find((line) => line.includes("stopping"));
  expect(stopped).toContain("reason=parent exited");
  expect(stopped).toContain(PARENT_EXITED_HINT);
});

it("exits when its parent is gone before it finished starting", async () => {
  const state = join(dir.path, "state-early");
  const lock = join(state, "local.lock");
  // A parent that leaves while local is still starting: once the state folder's lock is taken, before the emulator listens.
  const script = `const { spawn } = require("node:child_process");
const { existsSync } = require("node:fs");
const child = spawn(process.execPath, ${JSON.stringify([CLI, "local", "--port", "0", "--state", state])}, { stdio: "ignore", detached: true });
process.stdout.write("child " + child.pid + "\\n");
const wait = setInterval(() => { if (existsSync(${JSON.stringify(lock)})) { clearInterval(wait); process.exit(0); } }, 5);`;
  const parent = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  pids.push(parent.pid ?? 0);
  let out = "";
  parent.stdout.setEncoding("utf8").on("data", (chunk: string) => (out += chunk));
  await new Promise((resolve) => parent.once("exit", resolve));
  const child = Number(/child (\d+)/.exec(out)?.[1]);
  pids.push(child);
  // Bounded wait: starting takes seconds, then the child checks every second.
  for (let i = 0; i < 600 && running(child); i += 1) await new Promise((resolve) => setTimeout(resolve, 100));
  expect(running(child)).toBe(false);
  expect(existsSync(lock)).toBe(false);
});
