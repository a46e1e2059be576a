// A drill whose report no agent took in time (another command's own agent kept
// the state folder past the drill's wait) lost its report: a passed drill the
// target never heard of. The report is now kept in the state folder, named by
// `tidemark status`, and journaled once by the set's next agent.

import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it, vi } from "vitest";
import type * as CommandAgentWait from "../../agent/command-agent-wait.ts";
import { commandWaits } from "../../agent/command-agent-wait.ts";
import { drillCommand, sendDrillReport } from "../../agent/commands/drill.ts";
import { operate } from "../../agent/commands/operate.ts";
import { collectStatus, statusCommand } from "../../agent/commands/status.ts";
import { loadConfig, type AgentConfig } from "../../agent/config.ts";
import { journalKept, keepDrillReport, keptDrillReports, keptReportsDir } from "../../agent/drill-kept.ts";
import { acquireStateLock } from "../../agent/state-lock.ts";
import type { DrillReport } from "../../contract/drills.ts";
import { tempDir } from "../support/tree.ts";

const startAgent = vi.hoisted(() => vi.fn());
vi.mock("../../agent/runtime.ts", () => ({ startAgent }));
// The drill command's own run: its outcome given, its wait for another command's agent short (five minutes in use).
const runDrill = vi.hoisted(() => vi.fn());
vi.mock("../../agent/drill.ts", () => ({ runDrill }));
vi.mock("../../agent/command-agent-wait.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof CommandAgentWait>();
  return { ...actual, commandWaits: (_bound?: number, now?: number) => actual.commandWaits(300, now) };
});

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

function setUp(): { config: AgentConfig; file: string } {
  dir = tempDir("tidemark-drill-kept-");
  mkdirSync(join(dir.path, "src"));
  const file = join(dir.path, "tidemark.config.json");
  // A target that refuses connections at once: status names it unreachable without waiting.
  writeFileSync(file, JSON.stringify({ endpoint: "http://127.0.0.1:9", queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "db", path: "src" }] }));
  return { config: loadConfig(file), file };
}

function drillReport(id: string, passed: boolean): DrillReport {
  return {
    id,
    set: "db",
    passed,
    startedAt: "2026-12-01T04:00:00.000Z",
    finishedAt: `2026-12-01T04:0${id.length % 10}:00.000Z`,
    recoveryPoint: { kind: "snapshot", id: "snap-1", takenAt: "2026-12-01T03:59:00.000Z" },
    rto: { restoreMs: 1, verifyMs: 1, checkMs: 0, totalMs: 2 },
    rpo: { ageMs: 60_000, lagMs: null },
    entries: 3,
    bytes: 10,
    problems: [],
    problemCount: 0,
    scratch: { path: "/tmp/x", kept: false },
  };
}

/** `tidemark verify`'s own agent: holds the state lock and refuses every request on its socket, as the real one does. */
async function verifyAgent(stateDir: string): Promise<ChildProcess> {
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; acquireStateLock(${JSON.stringify(stateDir)}, "tidemark verify"); const { startControlServer, controlSocketPath } = await import(${JSON.stringify(CONTROL_MODULE)}); const { servedRoutes } = await import(${JSON.stringify(COMMAND_AGENT_MODULE)}); await startControlServer(controlSocketPath(${JSON.stringify(stateDir)}), servedRoutes("tidemark verify", { "/drill-report": async () => ({}) })); process.stdout.write("ready\\n"); setInterval(() => {}, 1000);`;
  const started = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  child = started;
  await new Promise<void>((resolve, reject) => {
    started.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve());
    started.once("exit", (code) => reject(new Error(`the stand-in agent exited with ${code}`)));
  });
  return started;
}

/** The command's own agent as startAgent gives it: takes the state lock and journals drill reports into `journaled`. */
function ownAgent(stateDir: string, command: string, journaled: DrillReport[]): void {
  startAgent.mockImplementation(async () => {
    const lock = acquireStateLock(stateDir, command);
    const agent = {
      journalDrill: async (_set: string, report: DrillReport) => journaled.push(report),
      drain: async () => {},
    };
    return { agent, operations: () => ({ agent }), stop: async () => lock.release() };
  });
}

it("a report no agent took before the wait ended is kept, named by status, and journaled once by the set's next command", async () => {
  const { config, file } = setUp();
  const verify = await verifyAgent(config.stateDir);
  const report = drillReport("20261201T040000Z-aaaaaa", true);
  // The wait for verify's agent ends (a short bound here; five minutes in use) while it still holds the state folder.
  const delivery = await sendDrillReport(config, report, { quiet: true, waits: commandWaits(300) });
  expect(delivery).toMatchObject({ state: "kept", reason: expect.stringContaining("`tidemark verify`") });
  if (delivery.state !== "kept") throw new Error("not kept");
  expect(existsSync(delivery.file)).toBe(true);
  expect(keptDrillReports(config.stateDir, "db")).toEqual([{ file: delivery.file, report }]);

  const [status] = await collectStatus(file);
  expect(status?.drillReportsKept).toEqual([{ id: report.id, passed: true, finishedAt: report.finishedAt, file: delivery.file }]);
  const out: string[] = [];
  const stdout = vi.spyOn(process.stdout, "write").mockImplementation((text) => out.push(String(text)) > 0);
  try {
    await statusCommand.run({ config: file }, []);
  } finally {
    stdout.mockRestore();
  }
  expect(out.join("")).toContain(`db: drill ${report.id} passed at ${report.finishedAt}; its report is not sent to the target yet: kept at ${delivery.file}, sent by the set's next agent`);

  // verify ends; the set's next command (a verify of the set, with its own agent) journals the kept report with its work.
  await ended(verify);
  const journaled: DrillReport[] = [];
  ownAgent(config.stateDir, "tidemark verify", journaled);
  await operate(config, "/verify", { set: "db" }, async () => ({}), { quiet: true });
  expect(journaled).toEqual([report]);
  expect(keptDrillReports(config.stateDir)).toEqual([]);
  expect((await collectStatus(file))[0]?.drillReportsKept).toEqual([]);
});

it("a drill with no agent in the way journals its report once through its own agent, and keeps no file", async () => {
  const { config } = setUp();
  const journaled: DrillReport[] = [];
  ownAgent(config.stateDir, "tidemark drill", journaled);
  const report = drillReport("20261201T041000Z-bbbbbb", false);
  const delivery = await sendDrillReport(config, report, { quiet: true });
  expect(delivery).toEqual({ state: "journaled" });
  expect(journaled).toEqual([report]);
  // Nothing was written in the state folder: only a report no agent took is kept.
  expect(existsSync(keptReportsDir(config.stateDir))).toBe(false);
});

it("a kept FAILED report is a problem (no DrillFailed alarm yet), and any kept report keeps the set from being caught up", async () => {
  const { config, file } = setUp();
  const failed = drillReport("20261201T045000Z-ffffff", false);
  const kept = keepDrillReport(config.stateDir, failed);
  const [status] = await collectStatus(file);
  expect(status?.problems).toContainEqual({ kind: "drill-report-kept", message: expect.stringContaining(`drill ${failed.id} FAILED at ${failed.finishedAt} and its report is not sent to the target yet (kept at ${kept})`) });
  expect(status?.caughtUp).toBe(false);
  expect(status?.inSync).toBe(false);
});

it.skipIf(process.getuid?.() !== 0)("a drill run as root keeps its report as the state folder's owner (the service's user), so the agent can take it away", async () => {
  const { config, file } = setUp();
  const NOBODY = 65534;
  // The service's user reaches its own state folder (the agent runs as it).
  chmodSync(dirname(config.stateDir), 0o711);
  mkdirSync(config.stateDir, { mode: 0o700 });
  chownSync(config.stateDir, NOBODY, NOBODY);
  // drill-reports/ left as root's (by hand, or an earlier build's root drill): the agent cannot take a report away; status says so.
  mkdirSync(keptReportsDir(config.stateDir), { mode: 0o755 });
  writeFileSync(join(keptReportsDir(config.stateDir), "20261201T046000Z-gggggg.json"), JSON.stringify(drillReport("20261201T046000Z-gggggg", true)));
  const [before] = await collectStatus(file);
  expect(before?.problems).toContainEqual({ kind: "drill-report-kept", message: expect.stringContaining(`${keptReportsDir(config.stateDir)} is owned by uid 0, the state folder by uid ${NOBODY}`) });

  // Not taken over by root (the link-safe rule: root writes nothing there by path); once the operator runs the
  // remedy status gives, the report is kept as the owner's.
  expect(() => keepDrillReport(config.stateDir, drillReport("20261201T047000Z-hhhhhh", true))).toThrow(/EACCES/);
  chownSync(keptReportsDir(config.stateDir), NOBODY, NOBODY);
  chownSync(join(keptReportsDir(config.stateDir), "20261201T046000Z-gggggg.json"), NOBODY, NOBODY);
  const kept = keepDrillReport(config.stateDir, drillReport("20261201T047000Z-hhhhhh", true));
  expect(statSync(kept)).toMatchObject({ uid: NOBODY, gid: NOBODY });
  expect(statSync(keptReportsDir(config.stateDir)).uid).toBe(NOBODY);
  const [after] = await collectStatus(file);
  expect(after?.problems.filter((p) => p.kind === "drill-report-kept")).toEqual([]);

  // A new folder takes the state folder's mode too.
  rmSync(keptReportsDir(config.stateDir), { recursive: true });
  keepDrillReport(config.stateDir, drillReport("20261201T048000Z-iiiiii", true));
  expect(statSync(keptReportsDir(config.stateDir))).toMatchObject({ uid: NOBODY, mode: expect.any(Number) });
  expect(statSync(keptReportsDir(config.stateDir)).mode & 0o777).toBe(0o700);
});

it.skipIf(process.getuid?.() !== 0)("a drill run as root follows no link the service's user planted in its state folder", async () => {
  const { config } = setUp();
  const NOBODY = 65534;
  chmodSync(dirname(config.stateDir), 0o711);
  mkdirSync(config.stateDir, { mode: 0o700 });
  chownSync(config.stateDir, NOBODY, NOBODY);
  // Root's own folder and file, elsewhere: what the service's user would like to own or overwrite.
  const rootDir = join(dirname(config.stateDir), "root-only");
  mkdirSync(rootDir, { mode: 0o700 });
  const rootFile = join(rootDir, "secret");
  writeFileSync(rootFile, "root's\n", { mode: 0o600 });

  // drill-reports/ is a link to root's folder: nothing is written there, and the folder stays root's.
  symlinkSync(rootDir, keptReportsDir(config.stateDir));
  expect(() => keepDrillReport(config.stateDir, drillReport("20261201T049000Z-jjjjjj", true))).toThrow();
  expect(statSync(rootDir)).toMatchObject({ uid: 0, gid: 0 });
  expect(statSync(rootDir).mode & 0o777).toBe(0o700);

  // The temp file the drill will write is a link to root's file (the user read the CLI's pid): root's file is untouched.
  rmSync(keptReportsDir(config.stateDir));
  mkdirSync(keptReportsDir(config.stateDir), { mode: 0o700 });
  chownSync(keptReportsDir(config.stateDir), NOBODY, NOBODY);
  const report = drillReport("20261201T049500Z-kkkkkk", true);
  symlinkSync(rootFile, `${join(keptReportsDir(config.stateDir), `${report.id}.json`)}.${process.pid}.tmp`);
  const groups = process.getgroups?.();
  const kept = keepDrillReport(config.stateDir, report);
  // The drill is root again afterwards, with root's groups.
  expect([process.geteuid?.(), process.getegid?.(), process.getgroups?.()]).toEqual([0, 0, groups]);
  expect(readFileSync(rootFile, "utf8")).toBe("root's\n");
  expect(statSync(rootFile)).toMatchObject({ uid: 0, gid: 0 });
  expect(statSync(kept)).toMatchObject({ uid: NOBODY, gid: NOBODY });
  expect(JSON.parse(readFileSync(kept, "utf8"))).toEqual(report);
});

it("a kept report is journaled by whoever claims it first, once; a failed journal keeps it", async () => {
  const { config } = setUp();
  const report = drillReport("20261201T042000Z-cccccc", true);
  const file = keepDrillReport(config.stateDir, report);
  await expect(journalKept(file, () => Promise.reject(new Error("disk full")))).rejects.toThrow("disk full");
  expect(keptDrillReports(config.stateDir)).toEqual([{ file, report }]);
  let journals = 0;
  const slow = () => new Promise<number>((resolve) => setTimeout(() => resolve(++journals), 20));
  const both = await Promise.all([journalKept(file, slow), journalKept(file, slow)]);
  expect(journals).toBe(1);
  expect(both.filter((seq) => seq !== undefined)).toEqual([1]);
  expect(keptDrillReports(config.stateDir)).toEqual([]);
});

it("`tidemark drill` says where its report was kept, exits with the drill's outcome, and --json names the delivery", async () => {
  const { config, file } = setUp();
  await verifyAgent(config.stateDir);
  const out: string[] = [];
  const stdout = vi.spyOn(process.stdout, "write").mockImplementation((text) => out.push(String(text)) > 0);
  const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  try {
    const passed = drillReport("20261201T043000Z-dddddd", true);
    runDrill.mockResolvedValueOnce({ report: passed, problems: [] });
    expect(await drillCommand.run({ config: file }, ["db"])).toBe(0);
    const kept = keptDrillReports(config.stateDir)[0]?.file ?? "";
    expect(out.join("")).toContain(`  report: NOT SENT YET (state folder ${config.stateDir} is still in use by \`tidemark verify\``);
    expect(out.join("")).toContain(`kept at ${kept}: the set's next agent on this state folder sends it`);

    const failed = drillReport("20261201T044000Z-eeeeee", false);
    runDrill.mockResolvedValueOnce({ report: failed, problems: [] });
    out.length = 0;
    expect(await drillCommand.run({ config: file, json: true }, ["db"])).toBe(3);
    const printed = JSON.parse(out.join("")) as { id: string; delivery: unknown };
    expect(printed.id).toBe(failed.id);
    expect(printed.delivery).toEqual({ state: "kept", file: keptDrillReports(config.stateDir).find((k) => k.report.id === failed.id)?.file, reason: expect.stringContaining("`tidemark verify`") });
  } finally {
    stdout.mockRestore();
    stderr.mockRestore();
  }
});
