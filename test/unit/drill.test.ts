// Recovery drills on an in-memory target: a healthy set passes with RTO and
// RPO in its report and leaves no scratch folder; content altered or deleted
// behind the applier's back fails the drill naming the path; a failing
// application check fails it; the report travels the stream to
// drills/<set>/<id>.json with a metric; the schedule runs drills when due.

import { chmodSync, existsSync, lutimesSync, mkdirSync, readdirSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../agent/config.ts";
import { checkRestoredTree, reportedProblems, runDrill } from "../../agent/drill.ts";
import type { RecoveryEntry } from "../../agent/restore-writer.ts";
import { latestDrillReport } from "../../lambdas/target/index.ts";
import { DrillScheduler } from "../../agent/drill-schedule.ts";
import { drillFailure, findProblems } from "../../agent/set-health.ts";
import { DrillReportSchema, type DrillReport } from "../../contract/drills.ts";
import { dataKey, drillReportKey } from "../../contract/layout.ts";
import { DEFAULT_TASK_TIMEOUT_SECONDS } from "../../contract/tasks.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { signedIncoming } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "app";

describe("tidemark drill", () => {
  let h: Harness;
  beforeEach(async () => {
    h = agentHarness(SET);
    mkdirSync(join(h.src.path, "db"));
    writeFileSync(join(h.src.path, "db/app.db"), "rows");
    writeFileSync(join(h.src.path, "readme.txt"), "hello");
    await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS } });
    await h.agent.drain(SET);
  });
  afterEach(async () => {
    await h.close();
  });

  it("passes on a healthy set with RTO and RPO in its report, removes its scratch folder, and its report reaches drills/<set>/<id>.json", async () => {
    const { report, problems } = await runDrill(h.store, SET, { check: "test -f db/app.db && test -f readme.txt" });
    expect(problems).toEqual([]);
    expect(report).toMatchObject({ passed: true, set: SET, problemCount: 0, entries: 3, recoveryPoint: { kind: "snapshot" }, check: { passed: true, code: 0 } });
    expect(report.rto.totalMs).toBeGreaterThanOrEqual(report.rto.restoreMs);
    expect(report.rpo.ageMs).toBeGreaterThanOrEqual(0);
    expect(report.rpo.lagMs).not.toBeNull();
    expect(existsSync(report.scratch.path)).toBe(false);

    await h.agent.journalDrill(SET, report);
    await h.agent.drain(SET);
    const stored = await h.store.get(drillReportKey(SET, report.id));
    expect(DrillReportSchema.parse(JSON.parse(stored?.body.toString() ?? "null"))).toEqual(report);
    expect(await latestDrillReport(h.store, SET)).toEqual(report);
  });

  it("passes on a tree with set-uid and set-gid files: the restore drops their bits (owners are not kept) and the comparison expects it, of a snapshot and of a moment", async () => {
    chmodSync(join(h.src.path, "db"), 0o2775);
    writeFileSync(join(h.src.path, "tool"), "#!/bin/sh\n");
    chmodSync(join(h.src.path, "tool"), 0o4755);
    chmodSync(join(h.src.path, "db/app.db"), 0o2755);
    await h.agent.scan(SET);
    await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS } });
    await h.agent.drain(SET);
    const to = tempDir("tidemark-drill-set-id-");
    try {
      for (const [name, at] of [["snapshot", undefined], ["moment", new Date().toISOString()]] as const) {
        const where = join(to.path, name);
        const { report, problems, setIdDropped } = await runDrill(h.store, SET, { to: where, keep: true, ...(at !== undefined ? { at } : {}) });
        expect(problems).toEqual([]);
        expect(report).toMatchObject({ passed: true, problemCount: 0, entries: 4 });
        expect(setIdDropped).toMatchObject({ count: 2, paths: ["db/app.db", "tool"] });
        expect([statSync(join(where, "tool")).mode & 0o7777, statSync(join(where, "db/app.db")).mode & 0o7777, statSync(join(where, "db")).mode & 0o7777]).toEqual([0o755, 0o755, 0o2775]);
      }
    } finally {
      to.remove();
    }
  });

  it("fails naming the path when an object was altered or deleted in the bucket behind the applier's back", async () => {
    const live = await h.store.get(dataKey(SET, "readme.txt"));
    await h.store.put(dataKey(SET, "readme.txt"), Buffer.from("HELLO"), live?.meta ?? {});
    await h.store.delete(dataKey(SET, "db/app.db"));
    const { report, problems } = await runDrill(h.store, SET);
    expect(report.passed).toBe(false);
    expect(problems.map((p) => p.path)).toEqual(["db/app.db", "readme.txt"]);
    expect(problems[0]?.reason).toMatch(/neither live nor preserved/);
    expect(problems[1]?.reason).toMatch(/the content read has sha256 [0-9a-f]{64}, the recovery point.s [0-9a-f]{64}/);
    expect(report.problems).toEqual(problems);
  });

  it("fails when the application check fails, with its output in the report, and keeps the tree with --keep", async () => {
    const to = tempDir("tidemark-drill-to-");
    try {
      const where = join(to.path, "restored");
      const { report } = await runDrill(h.store, SET, { check: "echo integrity check failed; exit 7", to: where, keep: true });
      expect(report.passed).toBe(false);
      expect(report.problemCount).toBe(0);
      expect(report.check).toMatchObject({ passed: false, code: 7, output: expect.stringContaining("integrity check failed") });
      // Status says why: its check, not "0 bad paths" (which reads as if nothing was wrong).
      const drillProblems = findProblems({ set: SET, counters: h.journal.sets.counters(SET), generation: undefined, drill: report, target: { error: "not asked" }, now: new Date() }).filter((p) => p.kind === "drill-failed");
      expect(drillProblems.map((p) => p.message)).toEqual([`the last recovery drill ${report.id} (${report.finishedAt}) failed its check (\`echo integrity check failed; exit 7\` exited with 7): see drills/${SET}/${report.id}.json`]);
      expect(readdirSync(where).sort()).toEqual(["db", "readme.txt"]);
      await expect(runDrill(h.store, SET, { to: where })).rejects.toThrow(/not empty/);
      expect(readdirSync(where).sort()).toEqual(["db", "readme.txt"]);
    } finally {
      to.remove();
    }
  });

  it("drills a moment of the protection window with --at: the tree as the agent journaled it then", async () => {
    const pause = () => new Promise((resolve) => setTimeout(resolve, 30));
    await pause();
    const before = new Date().toISOString();
    await pause();
    writeFileSync(join(h.src.path, "readme.txt"), "changed");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    const then = await runDrill(h.store, SET, { at: before, check: "grep -qx hello readme.txt" });
    expect(then.problems).toEqual([]);
    expect(then.report).toMatchObject({ passed: true, entries: 3, recoveryPoint: { kind: "point-in-time", id: before }, check: { passed: true } });
    const now = await runDrill(h.store, SET, { at: new Date().toISOString(), check: "grep -qx hello readme.txt" });
    expect(now.report).toMatchObject({ passed: false, problemCount: 0, check: { passed: false } });
    await expect(runDrill(h.store, SET, { at: before, snapshot: "latest" })).rejects.toThrow(/give one/);
  });

  it("runs scheduled drills when they are due, and not again before the interval passed", async () => {
    let now = new Date("2026-11-30T12:00:00Z");
    const scheduler = new DrillScheduler({
      plans: [{ set: SET, everyMs: 24 * 3_600_000 }],
      now: () => now,
      run: async (plan) => {
        const { report } = await runDrill(h.store, plan.set, { now: () => now });
        await h.agent.journalDrill(plan.set, report);
        await h.agent.drain(plan.set);
        return report;
      },
      lastDrill: async (set) => {
        const last = await latestDrillReport(h.store, set);
        return last && new Date(last.startedAt);
      },
    });
    expect(await scheduler.runDue()).toHaveLength(1);
    expect(await scheduler.runDue()).toHaveLength(0);
    now = new Date(now.getTime() + 25 * 3_600_000);
    const [second] = await scheduler.runDue();
    expect(second?.passed).toBe(true);
    expect(await latestDrillReport(h.store, SET)).toEqual(second);
  });

  it("stops without waiting out a drill in progress: the drill is aborted and its scratch folder removed", async () => {
    const to = tempDir("tidemark-drill-abort-");
    const where = join(to.path, "restored");
    let started: () => void = () => undefined;
    const running = new Promise<void>((resolve) => (started = resolve));
    const scheduler = new DrillScheduler({
      plans: [{ set: SET, everyMs: 3_600_000 }],
      lastDrill: async () => undefined,
      run: async (plan, signal) => {
        started();
        await new Promise((resolve) => signal.addEventListener("abort", resolve));
        return (await runDrill(h.store, plan.set, { to: where, signal })).report;
      },
    });
    try {
      scheduler.start();
      await running;
      await scheduler.stop();
      expect(existsSync(where)).toBe(false);
    } finally {
      to.remove();
    }
  });
});

describe("the latest drill report", () => {
  it("is the one that finished last, also among drills of the same second", async () => {
    const store = new MemoryStore();
    const report = (id: string, finishedAt: string, passed: boolean): DrillReport => ({
      id,
      set: SET,
      passed,
      startedAt: "2026-11-30T12:00:00.000Z",
      finishedAt,
      recoveryPoint: { kind: "snapshot", id: "snap-x", takenAt: "2026-11-30T11:00:00.000Z" },
      rto: { restoreMs: 1, verifyMs: 1, checkMs: 0, totalMs: 2 },
      rpo: { ageMs: 1, lagMs: null },
      entries: 1,
      bytes: 1,
      problems: [],
      problemCount: 0,
      scratch: { path: "/tmp/x", kept: false },
    });
    const put = (r: DrillReport) => store.put(drillReportKey(SET, r.id), Buffer.from(JSON.stringify(r)), {});
    await put(report("20261130T115959Z-ffffff", "2026-11-30T11:59:59.900Z", true));
    // Same second: the random suffix sorts the later drill first.
    await put(report("20261130T120000Z-zzzzzz", "2026-11-30T12:00:00.100Z", true));
    await put(report("20261130T120000Z-aaaaaa", "2026-11-30T12:00:00.700Z", false));
    expect((await latestDrillReport(store, SET))?.id).toBe("20261130T120000Z-aaaaaa");
  });
});

describe("a drill record on the target", () => {
  it("is written to drills/<set>/<id>.json under the stream's set, once, with a DrillPassed/DrillFailed metric line", async () => {
    const store = new MemoryStore();
    const lines: string[] = [];
    const applier = new Applier({ store, log: (line) => lines.push(line), metricsNamespace: "Tidemark/test" });
    const report: DrillReport = {
      id: "20261130T120000Z-abcdef",
      set: "claims-another-set",
      passed: false,
      startedAt: "2026-11-30T12:00:00.000Z",
      finishedAt: "2026-11-30T12:00:01.000Z",
      recoveryPoint: { kind: "snapshot", id: "snap-x", takenAt: "2026-11-30T11:00:00.000Z" },
      rto: { restoreMs: 500, verifyMs: 400, checkMs: 100, totalMs: 1000 },
      rpo: { ageMs: 3_600_000, lagMs: null },
      entries: 2,
      bytes: 9,
      problems: [{ path: "a", reason: "missing from the restored tree" }],
      problemCount: 1,
      scratch: { path: "/tmp/x", kept: false },
    };
    const body = JSON.stringify({ v: 1, set: SET, records: [{ seq: 1, op: "drill", report }] });
    expect(await applier.applyMessage(signedIncoming("m1", SET, body))).toMatchObject({ kind: "applied" });
    expect(JSON.parse((await store.get(drillReportKey(SET, report.id)))?.body.toString() ?? "null")).toEqual({ ...report, set: SET });
    const metric = JSON.parse(lines.find((line) => line.includes("DrillFailed")) ?? "{}");
    expect(metric).toMatchObject({ DrillPassed: 0, DrillFailed: 1, DrillRecoveryTime: 1000, _aws: { CloudWatchMetrics: [{ Namespace: "Tidemark/test" }] } });

    // A later record with the same id does not turn the failed drill into a pass.
    const forged = JSON.stringify({ v: 1, set: SET, records: [{ seq: 2, op: "drill", report: { ...report, passed: true, problems: [], problemCount: 0 } }] });
    expect(await applier.applyMessage(signedIncoming("m2", SET, forged))).toMatchObject({ kind: "applied" });
    expect(JSON.parse((await store.get(drillReportKey(SET, report.id)))?.body.toString() ?? "null")).toMatchObject({ passed: false });
    expect(lines.filter((line) => line.includes("DrillPassed")).map((line) => JSON.parse(line).DrillPassed)).toEqual([0]);
  });
});

describe("comparing a restored tree with its recovery point", () => {
  it("names a wrong mode, mtime, link target, kind, a lost hard link and an extra entry; a matching tree has none", async () => {
    const root = tempDir("tidemark-check-");
    try {
      const at = new Date("2026-11-30T10:00:00Z");
      const mtimeNs = String(BigInt(at.getTime()) * 1_000_000n);
      const file = (path: string, extra: Partial<RecoveryEntry> = {}): RecoveryEntry => ({ path, kind: "file", size: 1, mode: 0o644, mtimeNs, sha256: sha("x"), ...extra });
      const entries: RecoveryEntry[] = [
        file("mode"),
        file("mtime"),
        { path: "link", kind: "symlink", size: 0, mode: 0o777, mtimeNs, link: "mode" },
        file("kind"),
        file("one", { linkGroup: "0123456789abcdef" }),
        file("two", { linkGroup: "0123456789abcdef" }),
      ];
      for (const path of ["mode", "mtime", "one", "two"]) writeFileSync(join(root.path, path), "x", { mode: 0o644 });
      symlinkSync("mode", join(root.path, "link"));
      mkdirSync(join(root.path, "kind"));
      for (const path of ["mode", "mtime", "one", "two", "kind"]) utimesSync(join(root.path, path), at, at);
      lutimesSync(join(root.path, "link"), at, at);
      chmodSync(join(root.path, "kind"), 0o644);
      const healthy = entries.filter((e) => e.path !== "kind" && e.path !== "two");
      expect(await checkRestoredTree(root.path, [...healthy, { ...file("kind"), kind: "dir" }, file("two")], [])).toEqual([]);

      chmodSync(join(root.path, "mode"), 0o600);
      utimesSync(join(root.path, "mtime"), new Date(at.getTime() + 1000), new Date(at.getTime() + 1000));
      unlinkSync(join(root.path, "link"));
      symlinkSync("elsewhere", join(root.path, "link"));
      lutimesSync(join(root.path, "link"), at, at);
      writeFileSync(join(root.path, "extra.txt"), "not in the point");
      const problems = await checkRestoredTree(root.path, entries, [{ path: "gone", reason: "its content is neither live nor preserved" }]);
      expect(problems).toEqual([
        { path: "extra.txt", reason: "in the restored tree, not in the recovery point" },
        { path: "gone", reason: "not restored: its content is neither live nor preserved" },
        { path: "kind", reason: "restored as a dir, the recovery point has a file" },
        { path: "link", reason: 'links to "elsewhere", the recovery point to "mode"' },
        { path: "mode", reason: "mode 600, the recovery point has 644" },
        { path: "mtime", reason: expect.stringMatching(/^mtime \d+ ns, the recovery point has \d+ ns$/) },
        { path: "two", reason: "not a hard link of one, as it was on the source" },
      ]);
    } finally {
      root.remove();
    }
  });
});

describe("a drill report's problems", () => {
  it("keep as many paths as fit one queue message, however many and however long they are", () => {
    const problems = Array.from({ length: 1000 }, (_, i) => ({ path: `${"p".repeat(880)}${i}`, reason: "r".repeat(2000) }));
    const kept = reportedProblems(problems);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(200);
    expect(Buffer.byteLength(JSON.stringify(kept))).toBeLessThanOrEqual(96 * 1024 + kept.length);
    expect(kept[0]).toEqual({ path: problems[0]?.path, reason: "r".repeat(1024) });
  });
});

describe("drills in the agent config", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir("tidemark-config-");
  });
  afterEach(() => dir.remove());

  const config = (drills: unknown) => {
    const file = join(dir.path, "tidemark.config.json");
    writeFileSync(
      file,
      JSON.stringify({ queueUrl: "http://127.0.0.1:1/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "www", path: "www" }, { name: "vm", type: "volume", path: "disk.img" }], drills }),
    );
    return () => loadConfig(file);
  };

  it("reads a schedule and refuses an unknown set, a volume set and a bad interval", () => {
    expect(config([{ set: "www", every: "24h", check: "true" }])().drills).toEqual([{ set: "www", everyMs: 86_400_000, check: "true" }]);
    expect(config([{ set: "nope", every: "24h" }])).toThrow(ConfigError);
    expect(config([{ set: "nope", every: "24h" }])).toThrow(/no set named "nope"/);
    expect(config([{ set: "vm", every: "24h" }])).toThrow(/volume/);
    expect(config([{ set: "www", every: "daily" }])).toThrow(/drills.0.every/);
    expect(config([{ set: "www", every: "10s" }])).toThrow(/once a minute/);
  });
});

it("says why a drill failed: its bad paths, its check (how it ended), or both", () => {
  const check = (how: { code: number | null; timedOut: boolean }) => ({ command: "pg_verify", passed: false, ...how });
  expect(drillFailure({ problemCount: 3 })).toBe("with 3 bad paths");
  expect(drillFailure({ problemCount: 1, check: { command: "true", passed: true, code: 0, timedOut: false } })).toBe("with 1 bad path");
  expect(drillFailure({ problemCount: 0, check: check({ code: 1, timedOut: false }) })).toBe("its check (`pg_verify` exited with 1)");
  expect(drillFailure({ problemCount: 0, check: check({ code: null, timedOut: true }) })).toBe("its check (`pg_verify` timed out)");
  expect(drillFailure({ problemCount: 2, check: check({ code: null, timedOut: false }) })).toBe("with 2 bad paths, and its check (`pg_verify` was killed)");
});
