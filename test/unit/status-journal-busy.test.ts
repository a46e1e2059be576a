// `tidemark status` while another process holds the journal's lock (an
// operator's `sqlite3 journal.db` left in a transaction): it reads the journal
// all the same, as a reader takes no write lock (it failed with a bare
// "database is locked" after the busy timeout, as its open removed leftover
// content files under the write lock). When even reads are locked out, it
// names the file and the process holding it, and still reports the target.

import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { collectStatus } from "../../agent/commands/status.ts";
import { loadConfig } from "../../agent/config.ts";
import { journalBusyProblem } from "../../agent/journal-busy.ts";
import { Journal } from "../../agent/journal.ts";
import { tempDir } from "../support/tree.ts";

let dir: ReturnType<typeof tempDir>;
let holder: ChildProcess | undefined;

afterEach(() => {
  holder?.kill();
  holder = undefined;
  dir.remove();
});

function setUp(): { file: string; journalPath: string } {
  dir = tempDir("tidemark-status-busy-");
  mkdirSync(join(dir.path, "src"));
  const file = join(dir.path, "tidemark.config.json");
  // A target that refuses connections at once: status names it unreachable without waiting.
  writeFileSync(file, JSON.stringify({ endpoint: "http://127.0.0.1:9", queueUrl: "http://127.0.0.1:9/000000000000/q.fifo", bucket: "bucket", stateDir: "state", sets: [{ name: "db", path: "src" }] }));
  const { stateDir } = loadConfig(file);
  const journal = Journal.open(stateDir);
  journal.append("db", [{ op: "mkdir", path: "a", mode: 0o755, mtimeNs: "0" }]);
  journal.close();
  return { file, journalPath: join(stateDir, "journal.db") };
}

/** Another process holding the journal in a transaction until killed; resolves once it holds it. */
async function holdJournal(path: string, sql: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ["-e", `const {DatabaseSync}=require('node:sqlite');const d=new DatabaseSync(${JSON.stringify(path)});d.exec(${JSON.stringify(sql)});console.log('held');setInterval(()=>{},1000)`], { stdio: ["ignore", "pipe", "inherit"] });
  holder = child;
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`the holder exited with ${code}`)));
  });
  return child;
}

it("reads the journal while another process holds it in a write transaction", async () => {
  const { file, journalPath } = setUp();
  await holdJournal(journalPath, "BEGIN EXCLUSIVE; UPDATE sets SET name = name");
  const [report] = await collectStatus(file);
  expect(report?.backlog.records).toBe(1);
  expect(report?.journalProblem).toBeNull();
  expect(report?.problems.map((p) => p.kind)).not.toContain("journal-problem");
});

it("names the journal and the process holding it when even reading it is locked out, and still reports the target", async () => {
  const { file, journalPath } = setUp();
  const child = await holdJournal(journalPath, "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE sets SET name = name");
  const [report] = await collectStatus(file);
  const problem = report?.problems.find((p) => p.kind === "journal-problem")?.message;
  expect(problem).toContain(`the journal ${journalPath} is locked by another process`);
  expect(problem).toContain(`pid ${child.pid}`);
  expect(report?.problems.map((p) => p.kind)).not.toContain("no-journal");
  expect(report?.target).toMatchObject({ reachable: false });
  expect(report?.inSync).toBe(false);
});

it("waits out a lock held briefly instead of calling the journal locked at once (its open sets the busy timeout first)", async () => {
  const { file, journalPath } = setUp();
  // Holds even readers out until told to go, then lets go 300 ms later: status is by then blocked opening the journal.
  const child = spawn(
    process.execPath,
    ["-e", `const {DatabaseSync}=require('node:sqlite');const d=new DatabaseSync(${JSON.stringify(journalPath)});d.exec('PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE sets SET name = name');console.log('held');process.stdin.once('data',()=>setTimeout(()=>{d.exec('COMMIT');d.close();setInterval(()=>{},1000)},300))`],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  holder = child;
  await new Promise<void>((resolve, reject) => {
    child.stdout?.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`the holder exited with ${code}`)));
  });
  await new Promise<void>((resolve) => child.stdin?.write("go\n", () => resolve()));
  const [report] = await collectStatus(file);
  expect(report?.problems.map((p) => p.kind)).not.toContain("journal-problem");
  expect(report?.journalProblem).toBeNull();
  expect(report?.backlog.records).toBe(1);
});

it("names the holder of a journal reached through a symlinked state folder, and labels the agent among holders", async () => {
  const { journalPath } = setUp();
  const child = await holdJournal(journalPath, "PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; UPDATE sets SET name = name");
  const link = join(dir.path, "state-link");
  symlinkSync(join(dir.path, "state"), link);
  const viaLink = join(link, "journal.db");
  expect(journalBusyProblem(viaLink)).toContain(`open in pid ${child.pid} (`);
  // The holder is the agent (its pid in the state folder's lock): labelled, so nobody kills it for the lock's holder.
  writeFileSync(join(dir.path, "state", "tidemark.lock"), `${JSON.stringify({ pid: child.pid, host: hostname(), command: "run" })}\n`);
  expect(journalBusyProblem(viaLink)).toContain(`pid ${child.pid} (the agent) (`);
});
