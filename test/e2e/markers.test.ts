// Task markers end to end on the emulator, with the CLI as a script runs it:
// a busy application paused with SIGSTOP, `tidemark task --wait`, the
// application resumed; the snapshot restored later equals the source as it
// was while paused, file for file and byte for byte. Also: markers sent
// straight to the queue, the recovery commands, and a disabled source.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { readTaskResult } from "../../lambdas/target/index.ts";
import type { SnapshotSummary, TaskResult } from "../../contract/tasks.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const WORKLOAD = fileURLToPath(new URL("../support/workload.ts", import.meta.url));
const SET = "app";
const SEEDS = [1, 2, 3, 4, 5];
/** A label sent from the console, with a newline and a terminal escape sequence in it. */
const CONSOLE_LABEL = "from the console\n\x1b[2J";

let cloud: TestCloud;
let agent: RunningAgent | undefined;
const work = tempDir();
const src = join(work.path, "src");
let config: string;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const exact = { microseconds: true, dirMtimes: true } as const;

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, "README"), "the application's data\n");
  config = cloud.writeConfig(work.path, [{ name: SET, path: "src" }]);
  agent = await startAgent(loadConfig(config), silentLogger);
});

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

describe("a snapshot marker is exact", () => {
  it.each(SEEDS)("seed %i: the restored snapshot equals the source while the application was paused", async (seed) => {
    const app: ChildProcess = spawn(process.execPath, [WORKLOAD, src, String(seed)], { stdio: "ignore" });
    try {
      await sleep(800 + seed * 150);
      app.kill("SIGSTOP");
      // SIGSTOP lands between system calls: what the application wrote is all on disk now.
      await sleep(20);
      const paused = await pictureOfSource(src, exact);
      const task = await tidemark(["task", SET, "--label", `seed-${seed}`, "--wait", "--json", "--config", config]);
      app.kill("SIGCONT");
      expect(task.stderr).toBe("");
      expect(task.code).toBe(0);
      const outcome = JSON.parse(task.stdout) as { id: string; seq: number; result: TaskResult };
      expect(outcome.result).toMatchObject({ status: "succeeded", seq: outcome.seq, label: `seed-${seed}` });

      // The application keeps writing (a node slow to start on a busy machine may not have written yet); the live mirror moves on.
      await eventually(
        async () => {
          // A file that vanishes between the listing and its lstat is the application moving on, too.
          const now = await pictureOfSource(src, exact).catch((error: unknown) => {
            if (error instanceof Error && "code" in error && error.code === "ENOENT") return undefined;
            throw error;
          });
          if (now !== undefined) expect(now).not.toEqual(paused);
        },
        60_000,
        50,
      );
      await sleep(700);
      expect(app.exitCode, "the workload died").toBeNull();
      app.kill("SIGKILL");
      const to = join(work.path, `restore-${seed}`);
      const restore = await tidemark(["restore", SET, "--snapshot", String(outcome.result.outputs.snapshotId), "--to", to, "--config", config]);
      expect(restore.code).toBe(0);
      expect(restore.stdout).toMatch(/^restored snapshot snap-\S+ of set app to \S+: \d+ files/);
      expect(await pictureOfSource(to, exact)).toEqual(paused);
      expect(await pictureOfSource(src, exact)).not.toEqual(paused);
    } finally {
      app.kill("SIGKILL");
    }
  });
});

describe("markers and recovery from the command line", () => {
  it("applies a marker sent straight to the queue in queue order", async () => {
    await eventually(async () => expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(src)));
    const before = await pictureOfSource(src, exact);
    // What the README tells a console user to send: no deduplication id, the queue deduplicates by content (as on AWS).
    await cloud.sqs.send(
      new SendMessageCommand({
        QueueUrl: cloud.queueUrl,
        MessageGroupId: SET,
        MessageBody: JSON.stringify({ v: 1, set: SET, task: { id: "console-1", action: "snapshot", label: CONSOLE_LABEL } }),
      }),
    );
    // Journaled after the marker was queued: not in its snapshot.
    writeFileSync(join(src, "after-console-marker.txt"), "later");
    let result: TaskResult | undefined;
    await eventually(async () => {
      result = await readTaskResult(cloud.store, SET, "console-1");
      expect(result?.status).toBe("succeeded");
    });
    expect(result).toMatchObject({ seq: null, label: CONSOLE_LABEL, outputs: { snapshotId: "snap-console-1" } });
    const to = join(work.path, "restore-console");
    expect((await tidemark(["restore", SET, "--snapshot", "snap-console-1", "--to", to, "--config", config])).code).toBe(0);
    expect(await pictureOfSource(to, exact)).toEqual(before);
    // `latest` is now the console marker's snapshot: restore says so, and names the newest of the agent's stream.
    const latest = await tidemark(["restore", SET, "--snapshot", "latest", "--to", join(work.path, "restore-latest"), "--config", config]);
    expect(latest.code).toBe(0);
    expect(latest.stdout).toMatch(
      /\n--snapshot latest is snap-console-1 \(taken \S+\), from marker console-1 sent straight to the queue \(no seq: [^)]*\); the newest from the agent's stream is (snap-\S+) \(taken \S+\): give `--snapshot \1` for it\n$/,
    );
    const asJson = await tidemark(["restore", SET, "--snapshot", "latest", "--to", join(work.path, "restore-latest-json"), "--json", "--config", config]);
    expect(asJson.stderr).toBe("");
    expect(JSON.parse(asJson.stdout)).toMatchObject({ snapshot: "snap-console-1", latest: { id: "snap-console-1", taskId: "console-1", seq: null, origin: "queue", newestFromStream: expect.stringMatching(/^snap-/) } });
  });

  it("lists tasks and snapshots, refuses a non-empty restore folder, and prunes", async () => {
    const tasks = await tidemark(["tasks", SET, "--limit", "0", "--json", "--config", config]);
    expect(tasks.code).toBe(0);
    const results = JSON.parse(tasks.stdout) as TaskResult[];
    expect(results.map((r) => r.label)).toEqual([...SEEDS.map((s) => `seed-${s}`), CONSOLE_LABEL]);
    const human = await tidemark(["tasks", SET, "--config", config]);
    expect(human.stdout).toMatch(/^TASK +SEQ +ACTION +LABEL +STATUS +REACHED +OUTCOME\n/);
    // The label's newline and escape sequence are shown, not obeyed.
    expect(human.stdout).toMatch(/\nconsole-1 +- +snapshot +from the console\\n\\x1b\[2J +succeeded +\S+ +snapshot snap-console-1 \(\d+ files, /);
    expect(human.stdout).not.toContain("\x1b");

    const listed = await tidemark(["snapshots", SET, "--json", "--config", config]);
    const snapshots = JSON.parse(listed.stdout) as SnapshotSummary[];
    expect(snapshots).toHaveLength(SEEDS.length + 1);
    const table = (await tidemark(["snapshots", SET, "--config", config])).stdout;
    expect(table).toMatch(/^SNAPSHOT +TASK +LABEL +TAKEN +HOLDS +BYTES +DIGEST +CHECK\n(.*\d+ files .* (matched|unverified) +verified\n)+/);
    expect(table).toContain("from the console\\n\\x1b[2J");

    const occupied = join(work.path, "restore-1");
    const refused = await tidemark(["restore", SET, "--snapshot", "latest", "--to", occupied, "--config", config]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^tidemark: .*restore-1 is not empty; restore into an empty folder, or pass --force/);
    const missing = await tidemark(["restore", SET, "--snapshot", "snap-nope", "--to", join(work.path, "x"), "--config", config]);
    expect(missing.stderr).toMatch(/has no snapshot "snap-nope" \(snapshots: .*snap-console-1/);

    // Every snapshot here is inside the target's protection window: the target keeps them, and says so.
    const prune = await tidemark(["prune", SET, "--keep", "2", "--json", "--config", config]);
    expect(prune.stderr).toBe("");
    expect(JSON.parse(prune.stdout)).toMatchObject({ deleted: [], protected: snapshots.slice(0, -2).map((s) => s.id), windowDays: 7 });
    expect(JSON.parse((await tidemark(["snapshots", SET, "--json", "--config", config])).stdout)).toHaveLength(SEEDS.length + 1);
    const said = await tidemark(["prune", SET, "--keep", "2", "--config", config]);
    expect(said.stdout).toContain(`the target kept ${SEEDS.length - 1} more`);
  });

  it("refuses to insert a marker when the config disables them, and says why", async () => {
    const disabled = join(work.path, "disabled");
    mkdirSync(disabled, { recursive: true });
    const file = cloud.writeConfig(disabled, [{ name: SET, path: "../src" }], { tasks: { enabled: false } });
    const refused = await tidemark(["task", SET, "--config", file]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      `tidemark: task markers are disabled for this agent (tasks.enabled is false in ${file}); markers sent to the queue from elsewhere still run on the target\n`,
    );
    expect(readFileSync(file, "utf8")).toContain('"enabled": false');
  });

  it("runs --resume even when --quiesce fails, and inserts no marker", async () => {
    const log = join(work.path, "hooks.log");
    const failed = await tidemark(["task", SET, "--quiesce", "exit 4", "--resume", `echo resumed >> ${log}`, "--config", config]);
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/quiesce command `exit 4` exited with 4; no marker was inserted/);
    expect(readFileSync(log, "utf8")).toBe("resumed\n");
  });

  it("inserts a marker when no agent runs: the command journals and sends it itself", async () => {
    await agent?.stop();
    agent = undefined;
    writeFileSync(join(src, "while-no-agent-ran.txt"), "written with no agent running");
    const expected = await pictureOfSource(src, exact);
    const task = await tidemark(["task", SET, "--label", "no agent", "--wait", "--json", "--config", config]);
    expect(task.code).toBe(0);
    const outcome = JSON.parse(task.stdout) as { result: TaskResult };
    expect(outcome.result.status).toBe("succeeded");
    const to = join(work.path, "restore-no-agent");
    expect((await tidemark(["restore", SET, "--snapshot", String(outcome.result.outputs.snapshotId), "--to", to, "--config", config])).code).toBe(0);
    expect(await pictureOfSource(to, exact)).toEqual(expected);
  });
});
