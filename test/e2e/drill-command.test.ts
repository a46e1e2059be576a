// `tidemark drill` and `tidemark restore` as an operator runs them on the
// local cloud, and drills a running agent runs on schedule. With no agent running: the drill's report reaches
// drills/<set>/<id>.json through the stream and shows in `tidemark status`;
// an object altered in the bucket makes the drill exit 3 naming it, and a
// restore write everything else and exit 3 listing it in --json.

import { spawn } from "node:child_process";
import { existsSync, linkSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { keptReportsDir } from "../../agent/drill-kept.ts";
import { latestDrillReport } from "../../lambdas/target/index.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent } from "../../agent/runtime.ts";
import { DrillReportSchema } from "../../contract/drills.ts";
import { dataKey, drillReportKey } from "../../contract/layout.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const LOCK_MODULE = fileURLToPath(new URL("../../agent/state-lock.ts", import.meta.url));
const CONTROL_MODULE = fileURLToPath(new URL("../../agent/control.ts", import.meta.url));
const COMMAND_AGENT_MODULE = fileURLToPath(new URL("../../agent/command-agent.ts", import.meta.url));

let cloud: TestCloud;
const work = tempDir();
const src = join(work.path, "src");
let config: string;

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(join(src, "db"), { recursive: true });
  writeFileSync(join(src, "db/app.db"), "rows");
  writeFileSync(join(src, "a.txt"), "alpha");
  linkSync(join(src, "a.txt"), join(src, "db/a-link.txt"));
  config = cloud.writeConfig(work.path, [{ name: "web", path: "src" }]);
  const task = await tidemark(["task", "web", "--wait", "--json", "--config", config]);
  expect(task.code, task.stderr).toBe(0);
});

afterAll(async () => {
  await cloud?.stop();
  work.remove();
});

it("a running agent runs the drills its config schedules, and sends the report of a drill run from the command line", async () => {
  const scheduled = cloud.writeConfig(work.path, [{ name: "web", path: "src" }], { drills: [{ set: "web", every: "24h", check: "test -f a.txt" }] });
  const running = await startAgent(loadConfig(scheduled), silentLogger);
  try {
    await eventually(async () => expect(await latestDrillReport(cloud.store, "web")).toMatchObject({ passed: true, check: { command: "test -f a.txt", passed: true } }));
    const drill = await tidemark(["drill", "web", "--json", "--config", scheduled]);
    expect(drill.code, drill.stderr).toBe(0);
    const { id } = DrillReportSchema.parse(JSON.parse(drill.stdout));
    expect(JSON.parse(drill.stdout).delivery).toEqual({ state: "journaled" });
    // The agent took the report: the drill wrote nothing in the state folder (the drill may run as another user
    // than the agent, root for the service's agent), and status names no kept report.
    expect(existsSync(keptReportsDir(loadConfig(scheduled).stateDir))).toBe(false);
    const status = await tidemark(["status", "--json", "--config", scheduled]);
    expect(JSON.parse(status.stdout).sets[0].drillReportsKept).toEqual([]);
    await eventually(async () => expect(await cloud.store.get(drillReportKey("web", id))).toBeDefined());
  } finally {
    await running.stop();
  }
});

it("drills a healthy set: exit 0, the report reaches drills/<set>/<id>.json and `tidemark status` shows it", async () => {
  const drill = await tidemark(["drill", "web", "--json", "--check", "test -f db/app.db", "--config", config]);
  expect(drill.code, drill.stderr).toBe(0);
  const report = DrillReportSchema.parse(JSON.parse(drill.stdout));
  expect(report).toMatchObject({ passed: true, problemCount: 0, check: { passed: true } });
  await eventually(async () => expect(await cloud.store.get(drillReportKey("web", report.id))).toBeDefined());
  const status = await tidemark(["status", "--json", "--config", config]);
  expect(JSON.parse(status.stdout).sets[0].lastDrill).toMatchObject({ id: report.id, passed: true, problems: 0 });

  const human = await tidemark(["drill", "web", "--config", config]);
  expect(human.code).toBe(0);
  expect(human.stdout).toMatch(/^drill \S+ of set web: PASSED\n {2}recovery point: snapshot snap-/);
  expect(human.stdout).toMatch(/RTO: .*restore/);
  expect(human.stdout).toContain(`report: sent to the target, written to drills/web/`);
});

it("sends a passed drill's report once `tidemark verify`'s own agent, holding the state folder, has ended: exit 0, one line while it waits", async () => {
  const stateDir = loadConfig(config).stateDir;
  // verify's own agent: refuses the drill's request (it serves only verify) and ends a second later, as its work does:
  // its socket closed before its lock is released (runtime.ts's order), else a request could reach a dying listener.
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; const { startControlServer, controlSocketPath } = await import(${JSON.stringify(CONTROL_MODULE)}); const { servedRoutes } = await import(${JSON.stringify(COMMAND_AGENT_MODULE)}); acquireStateLock(${JSON.stringify(stateDir)}, "tidemark verify"); const served = servedRoutes("tidemark verify", { "/drill-report": async () => ({}) }); let control; control = await startControlServer(controlSocketPath(${JSON.stringify(stateDir)}), { "/drill-report": (body, progress) => { setTimeout(() => void control.close().then(() => process.exit(0)), 1000); return served["/drill-report"](body, progress); } }); process.stdout.write("ready\\n"); setInterval(() => {}, 1000);`;
  const verify = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise<void>((resolve, reject) => {
      verify.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve());
      verify.once("exit", (code) => reject(new Error(`the stand-in agent exited with ${code}`)));
    });
    const drill = await tidemark(["drill", "web", "--config", config]);
    expect(drill.code, drill.stderr).toBe(0);
    expect(drill.stderr).toMatch(new RegExp(`waiting up to \\d+ s for \`tidemark verify\` \\(pid ${verify.pid}\\) to finish with `));
    expect(drill.stdout).toContain("report: sent to the target, written to drills/web/");
    const id = /^drill (\S+) of set web/.exec(drill.stdout)?.[1];
    expect(id).toBeDefined();
    await eventually(async () => expect(await cloud.store.get(drillReportKey("web", id ?? ""))).toBeDefined());
  } finally {
    if (verify.exitCode === null && verify.signalCode === null) {
      const exited = new Promise((resolve) => verify.once("exit", resolve));
      verify.kill("SIGKILL");
      await exited;
    }
  }
});

it("an object altered behind the applier's back: the drill exits 3 naming it, restore writes the rest and exits 3", async () => {
  const live = await cloud.store.get(dataKey("web", "db/app.db"));
  await cloud.store.put(dataKey("web", "db/app.db"), Buffer.from("ROWS"), live?.meta ?? {});

  const drill = await tidemark(["drill", "web", "--config", config]);
  expect(drill.code).toBe(3);
  expect(drill.stdout).toContain("FAILED");
  expect(drill.stdout).toMatch(/"db\/app\.db": not restored: the content read has sha256 [0-9a-f]{64}, the recovery point.s [0-9a-f]{64}/);

  const to = join(work.path, "restored");
  const restore = await tidemark(["restore", "web", "--snapshot", "latest", "--to", to, "--json", "--config", config]);
  expect(restore.code).toBe(3);
  const result = JSON.parse(restore.stdout) as { failures: { path: string; reason: string }[]; hardLinks: number };
  expect(result.failures.map((f) => f.path)).toEqual(["db/app.db"]);
  expect(result.hardLinks).toBe(1);
  expect(statSync(join(to, "a.txt")).ino).toBe(statSync(join(to, "db/a-link.txt")).ino);

  const human = await tidemark(["restore", "web", "--snapshot", "latest", "--to", join(work.path, "again"), "--config", config]);
  expect(human.code).toBe(3);
  expect(human.stderr).toMatch(/not restored: "db\/app\.db": .*\n1 entries not restored; everything else was\n/);
});

it("refuses a moment before the set's history and a moment it cannot read, and --delete without --force", async () => {
  const before = await tidemark(["drill", "web", "--at", "2020-01-01T00:00:00Z", "--config", config]);
  expect(before.code).toBe(1);
  expect(before.stderr).toMatch(/^tidemark: 2020-01-01T00:00:00\.000Z is before the point-in-time history of set "web" begins .*; see `tidemark timeline web`\n$/);
  const unreadable = await tidemark(["drill", "web", "--at", "yesterday-ish", "--config", config]);
  expect(unreadable.code).not.toBe(0);
  expect(unreadable.stderr).toMatch(/"yesterday-ish" is not a moment/);
  const del = await tidemark(["restore", "web", "--snapshot", "latest", "--to", join(work.path, "x"), "--delete", "--config", config]);
  expect(del.code).toBe(2);
  expect(del.stderr).toMatch(/--delete .* needs --force/);
});
