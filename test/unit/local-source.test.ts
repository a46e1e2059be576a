// `tidemark local --source` says it is scanning before its first scan (minutes
// on a large tree, silent before), and a stop that comes during that scan (the
// launching process gone: untilStopped) ends it instead of waiting for it.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { startSourceAgent } from "../../agent/commands/local-source.ts";
import { StartInterruptedError } from "../../agent/interrupt.ts";
import { spawnTidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

const base = { source: "/data/node_modules", setName: "node_modules", configFile: "/tmp/tm/tidemark.config.json" };

it("prints what it scans, that it may take a while and how to see progress, before the start begins", async () => {
  const events: string[] = [];
  const started = await startSourceAgent({
    ...base,
    write: (text) => events.push(`write ${text}`),
    start: async () => {
      events.push("start");
      return "agent";
    },
    stopping: new Promise<string>(() => undefined),
  });
  expect(started).toEqual({ agent: "agent" });
  expect(events).toHaveLength(2);
  expect(events[0]).toMatch(/^write {3}scanning \/data\/node_modules \(set "node_modules"\).*can take minutes.*`tidemark status --config \/tmp\/tm\/tidemark.config.json` shows its progress\n$/);
  expect(events[1]).toBe("start");
});

it("ends a start still scanning when the launching process is gone", async () => {
  let parentGone: (why: string) => void = () => undefined;
  const stopping = new Promise<string>((resolve) => (parentGone = resolve));
  let scanning: () => void = () => undefined;
  const scanBegan = new Promise<void>((resolve) => (scanning = resolve));
  const outcome = startSourceAgent({
    ...base,
    write: () => undefined,
    // A scan that never ends by itself: only the signal stops it, as the agent's scan gives way.
    start: (signal) =>
      new Promise<string>((_, reject) => {
        scanning();
        signal.addEventListener("abort", () => reject(new StartInterruptedError("scanning set node_modules")), { once: true });
      }),
    stopping,
  });
  await scanBegan;
  parentGone("parent exited");
  expect(await outcome).toEqual({ stoppedBy: "parent exited", while: "scanning set node_modules" });
});

it("passes on a start that failed for another reason", async () => {
  await expect(
    startSourceAgent({ ...base, write: () => undefined, start: () => Promise.reject(new Error("journal corrupt")), stopping: new Promise<string>(() => undefined) }),
  ).rejects.toThrow("journal corrupt");
});

it("`tidemark local --source` prints the scanning line before the one saying it replicates (after the first scan)", async () => {
  const dir = tempDir("tidemark-local-source-");
  mkdirSync(join(dir.path, "tree"));
  writeFileSync(join(dir.path, "tree", "a.txt"), "a");
  const proc = spawnTidemark(["local", "--port", "0", "--state", join(dir.path, "state"), "--source", join(dir.path, "tree")]);
  proc.stderr?.resume();
  try {
    let out = "";
    await new Promise<void>((resolve, reject) => {
      proc.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
        out += chunk;
        if (out.includes("Press Ctrl-C to stop")) resolve();
      });
      proc.once("exit", (code) => reject(new Error(`tidemark local exited with ${code}: ${out}`)));
    });
    const scanning = out.indexOf(`scanning ${join(dir.path, "tree")} (set "tree")`);
    expect(scanning).toBeGreaterThan(-1);
    expect(out.indexOf("replicating ")).toBeGreaterThan(scanning);
  } finally {
    proc.kill("SIGTERM");
    await new Promise((resolve) => (proc.exitCode !== null ? resolve(undefined) : proc.once("exit", resolve)));
    dir.remove();
  }
}, 60_000);
