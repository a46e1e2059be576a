// `tidemark task --quiesce 'systemctl stop postgresql'` waited for a starting
// agent, or was refused by another host's lock, only after the quiesce had
// stopped the service: the database stayed down meanwhile, for nothing. The
// wait and the refusal now come before --quiesce runs.

import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { tidemark } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir> | undefined;

afterEach(() => {
  dir?.remove();
  dir = undefined;
});

it("refuses another host's lock before --quiesce runs, naming its holder; --resume does not run either", async () => {
  dir = tempDir("tidemark-task-ready-");
  mkdirSync(join(dir.path, "src"));
  mkdirSync(join(dir.path, "state"));
  const config = join(dir.path, "tidemark.config.json");
  writeFileSync(config, JSON.stringify({ queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "db", path: "src" }] }));
  // A container's agent, recreated under another hostname on the same state volume.
  writeFileSync(join(dir.path, "state", "tidemark.lock"), `${JSON.stringify({ pid: process.pid, host: "other-host", command: "tidemark run", started: "1" })}\n`);
  const quiesced = join(dir.path, "quiesced");
  const resumed = join(dir.path, "resumed");
  const task = await tidemark(["task", "db", "--quiesce", `touch '${quiesced}'`, "--resume", `touch '${resumed}'`, "--config", config]);
  expect(task.code).toBe(1);
  expect(task.stderr).toContain(`is in use by tidemark run (pid ${process.pid} on other-host)`);
  expect(existsSync(quiesced)).toBe(false);
  expect(existsSync(resumed)).toBe(false);
});
