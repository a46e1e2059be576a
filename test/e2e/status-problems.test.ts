// `tidemark status` names what the agent could not replicate: paths whose
// latest change the target refused (skipped), and a full disk under the
// state folder; the set is not "in sync" while either holds. Busy files the
// agent holds back are named too: the set is catching up meanwhile.

import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { initialStatus, statusKey, type SetStatus } from "../../contract/layout.ts";
import { ProblemFile } from "../../agent/problem-file.ts";
import { tidemark } from "../support/cli.ts";
import { standInAgent } from "../support/agent-stand-in.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});

afterAll(async () => {
  await cloud?.stop();
  work?.remove();
});

interface StatusJson {
  sets: { set: string; inSync: boolean; skipped: { path: string; reason: string }[]; journalProblem: { problem: string } | null; scanFailed: unknown }[];
}

it("lists skipped paths with their reason and a full disk, and the set is not in sync", async () => {
  mkdirSync(join(work.path, "src"));
  const config = cloud.writeConfig(work.path, [{ name: "docs", path: "src" }]);
  const stateDir = join(work.path, "state");
  const journal = Journal.open(stateDir);
  journal.markSkipped("docs", "big.bin", 7, "EntityTooLarge: refused");
  journal.held.scanFailed("docs", { folder: "", since: "2026-11-30T00:59:00.000Z", failedAt: "2026-11-30T01:00:00.000Z", error: "Error: EIO: i/o error, scandir", pid: process.pid, host: hostname() });
  journal.close();
  const problems = ProblemFile.open(stateDir);
  problems.write({ problem: "disk full writing /state/journal.db (database or disk is full)", since: "2026-11-30T01:00:00.000Z" });
  problems.close();

  const json = await tidemark(["status", "--json", "--config", config]);
  const report = (JSON.parse(json.stdout) as StatusJson).sets[0];
  expect(report?.skipped).toEqual([expect.objectContaining({ path: "big.bin", reason: "EntityTooLarge: refused" })]);
  expect(report?.journalProblem?.problem).toContain("disk full writing /state/journal.db");
  expect(report?.inSync).toBe(false);
  expect(report?.scanFailed).toEqual({ folder: "", since: "2026-11-30T00:59:00.000Z", failedAt: "2026-11-30T01:00:00.000Z", error: "Error: EIO: i/o error, scandir", agentRunning: true });

  const human = await tidemark(["status", "--config", config]);
  expect(human.stdout).toContain("scan-failed");
  expect(human.stdout).toContain("docs: the scan of the whole set that began at 2026-11-30T00:59:00.000Z failed at 2026-11-30T01:00:00.000Z: Error: EIO: i/o error, scandir; what it had not reached is not journaled");
  expect(human.stdout).toContain("docs: not replicated since");
  expect(human.stdout).toContain("big.bin: EntityTooLarge: refused");
  expect(human.stdout).toContain("disk full writing /state/journal.db");
});

it("names the busy files the agent holds back and an unfinished scan, says when their agent is not running, and the set is catching up, not in sync", async () => {
  const dir = tempDir();
  try {
    mkdirSync(join(dir.path, "src"));
    const config = cloud.writeConfig(dir.path, [{ name: "db", path: "src" }]);
    const journal = Journal.open(join(dir.path, "state"));
    // An agent ran the set (its start registers it).
    journal.sets.register("db");
    // An agent runs on the state folder (held files of an agent that stopped meanwhile are named all the same).
    const agent = standInAgent(join(dir.path, "state"));
    const since = "2026-11-30T01:00:00.000Z";
    // This process stands for a running agent; a pid that exited for one that stopped.
    journal.held.hold("db", { path: "app.db", reason: "its previous version (seq 4) is not sent yet; the newest is captured once it is", since, pid: process.pid, host: hostname() });
    const gone = spawnSync(process.execPath, ["-e", ""]).pid;
    journal.held.hold("db", { path: "old.db", reason: "its newest version is being captured", since, pid: gone, host: hostname() });
    journal.held.scanBegins("db", { since, pid: gone, host: hostname() });
    journal.close();

    const json = await tidemark(["status", "--json", "--config", config]);
    expect(json.code).toBe(0);
    const report = (JSON.parse(json.stdout) as { sets: { inSync: boolean; healthy: boolean; caughtUp: boolean; held: { path: string; agentRunning: boolean }[] }[] }).sets[0];
    expect(report).toMatchObject({ inSync: false, healthy: true, caughtUp: false, scanning: { since, agentRunning: false } });
    expect(report?.held).toEqual([expect.objectContaining({ path: "app.db", since, agentRunning: true }), expect.objectContaining({ path: "old.db", agentRunning: false })]);

    const human = await tidemark(["status", "--config", config]);
    expect(human.stdout).toContain("catching up (scanning, 2 held)");
    expect(human.stdout).toContain(`db: a scan of the set began at ${since} and has not finished: what it has not reached is not journaled yet (the agent running it is not running: its next start scans again)`);
    expect(human.stdout).toContain(`db: held back since ${since}: app.db: its previous version (seq 4) is not sent yet`);
    expect(human.stdout).toMatch(/db: held back since .*: old\.db: .*\(the agent holding it is not running: its next start captures the file\)/);
    agent.release();
  } finally {
    dir.remove();
  }
});

it("names folder changes applied but not yet on the live folders, and history segments the target could not replay (a problem until a resync)", async () => {
  const dir = tempDir();
  try {
    mkdirSync(join(dir.path, "src"));
    const config = cloud.writeConfig(dir.path, [{ name: "www", path: "src" }]);
    const journal = Journal.open(join(dir.path, "state"));
    // An agent ran the set (its start registers it).
    journal.sets.register("www");
    journal.close();
    const agent = standInAgent(join(dir.path, "state"));
    const lost = { at: "2026-11-30T02:00:00.000Z", first: 3, last: 5, unreadable: 2, error: 'history segment 3 of set "www" is missing' };
    const status: SetStatus = { ...initialStatus("www"), folderWritesFrom: 6, folderWritesLost: lost };
    await cloud.store.put(statusKey("www"), Buffer.from(JSON.stringify(status)), {});

    const json = await tidemark(["status", "--json", "--config", config]);
    expect(json.code).toBe(1);
    const report = (JSON.parse(json.stdout) as { sets: { inSync: boolean; problems: { kind: string; message: string }[]; target: { folderWritesFrom?: number; folderWritesLost?: unknown } }[] }).sets[0];
    expect(report?.target).toMatchObject({ folderWritesFrom: 6, folderWritesLost: lost });
    expect(report?.problems.map((p) => p.kind)).toEqual(["folder-writes-lost"]);
    expect(report?.inSync).toBe(false);

    const human = await tidemark(["status", "--config", config]);
    expect(human.stdout).toContain("NOT IN SYNC (folder-writes-lost)");
    expect(human.stdout).toContain("www: 2 history segment(s) between 3 and 5 could not be read when the applier replayed the folder changes left for later");
    expect(human.stdout).toContain("`tidemark mirror www --mode full` writes every folder again");
    expect(human.stdout).toContain("www: folder changes from history segment 6 on are applied (restores and snapshots have them) but not yet written to the live mirror's folder objects");
    agent.release();
  } finally {
    dir.remove();
  }
});
