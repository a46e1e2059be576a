// A corrupt journal, through the whole pipeline (`tidemark run` and the local
// cloud): while the agent is stopped, status names it as a journal problem;
// the next start sets it aside (renamed, byte for byte as it was) and begins
// a new generation as after a lost journal, so every change made meanwhile
// (and after) reaches the target, and status names the set-aside file. Each
// kind of damage: a cut file, overwritten pages, a garbage header, a
// write-ahead log deleted while its -shm stayed.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { afterAll, afterEach, beforeAll, expect, it } from "vitest";
import { dataKey } from "../../contract/layout.ts";
import { spawnTidemark, tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "cj";
let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;
let child: ChildProcess | undefined;
let config: string;
let src: string;
let journalFile: string;

function startAgentProcess(): Promise<ChildProcess> {
  const proc = spawnTidemark(["run", "--config", config]);
  return new Promise((resolve, reject) => {
    let err = "";
    proc.stderr?.on("data", (chunk: Buffer) => {
      err += chunk.toString();
      if (err.includes("replicating")) resolve(proc);
    });
    proc.on("exit", (code) => reject(new Error(`agent exited with ${code} before replicating: ${err}`)));
  });
}

async function stopAgent(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
  const proc = child;
  child = undefined;
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill(signal);
  await exited;
}

interface StatusJson {
  sets: { inSync: boolean; healthy: boolean; problems: { kind: string; message: string }[]; journalSetAside: { at: string; reason: string; file: string; with: string[] }[] }[];
}

async function statusJson(): Promise<{ code: number | null; json: StatusJson }> {
  const out = await tidemark(["status", "--json", "--config", config]);
  return { code: out.code, json: JSON.parse(out.stdout) as StatusJson };
}

/** Status as JSON and as text: the text only where a check reads it (each is a process of its own). */
async function status(): Promise<{ code: number | null; json: StatusJson; text: string }> {
  const [out, text] = await Promise.all([statusJson(), tidemark(["status", "--config", config])]);
  return { ...out, text: text.stdout };
}

const sha = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
const matches = async () => expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(src));

/**
 * `matches`, polled: a whole picture reads every object from the emulator in this process (400 and more requests
 * beside the applier's), so each poll first checks a few of the files `matches` holds, written last, with a request each.
 */
const matchesOnceArrived = (arrived: Record<string, string | undefined>) => async () => {
  for (const [path, text] of Object.entries(arrived)) expect((await cloud.store.get(dataKey(SET, path)))?.body.toString("utf8")).toBe(text);
  await matches();
};

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
  src = join(work.path, "src");
  mkdirSync(join(src, "d"), { recursive: true });
  // Enough entries for the index to span many pages, so that damage in the middle hits them.
  for (let i = 0; i < 400; i++) writeFileSync(join(src, "d", `f${i}-with-a-longer-name-than-most.txt`), `file ${i}`);
  config = cloud.writeConfig(work.path, [{ name: SET, path: "src" }]);
  journalFile = join(work.path, "state", "journal.db");
  child = await startAgentProcess();
  await eventually(matches, 150_000);
  await stopAgent();
}, 240_000);

// A kind that failed must not leave its agent running into the next one's damage.
afterEach(() => stopAgent());

afterAll(async () => {
  await stopAgent();
  await cloud?.stop();
  work?.remove();
});

function overwrite(file: string, offset: number, bytes: Buffer): void {
  const fd = openSync(file, "r+");
  writeSync(fd, bytes, 0, bytes.length, offset);
  closeSync(fd);
}

/** Leaves a journal whose -wal holds commits not yet in journal.db, as an agent killed while running does, then deletes the -wal. */
async function loseWriteAheadLog(): Promise<void> {
  child = await startAgentProcess();
  writeFileSync(join(src, "journaled-before-the-kill.txt"), "in the write-ahead log only");
  await eventually(async () => expect(await cloud.store.head(dataKey(SET, "journaled-before-the-kill.txt"))).toBeDefined());
  await stopAgent("SIGKILL");
  expect(existsSync(`${journalFile}-shm`)).toBe(true);
  rmSync(`${journalFile}-wal`);
}

const kinds: [string, () => Promise<void> | void, RegExp][] = [
  ["cut short", () => truncateSync(journalFile, Math.floor(statSync(journalFile).size / 3)), /malformed|quick_check/],
  ["overwritten in the middle", () => overwrite(journalFile, 4096 * 3, Buffer.alloc(4096 * 3, 0x5a)), /malformed|quick_check/],
  ["with a garbage header", () => overwrite(journalFile, 0, Buffer.from("this is no SQLite database, just garbage")), /not a database/],
  ["whose -wal was deleted while its -shm stayed", loseWriteAheadLog, /write-ahead log .*journal\.db-wal is missing/],
];

it.each(kinds)("a journal %s: status names it, the next start sets it aside and begins a new generation, and every change reaches the target", async (_kind, damage, reason) => {
  await damage();
  const damaged = sha(journalFile);
  const changed = `changed while the agent was stopped, ${_kind}`;
  const removed = `d/f${kinds.findIndex(([k]) => k === _kind) + 10}-with-a-longer-name-than-most.txt`;
  const made = `new-${kinds.findIndex(([k]) => k === _kind)}.txt`;
  writeFileSync(join(src, "d", "f1-with-a-longer-name-than-most.txt"), changed);
  rmSync(join(src, removed));
  writeFileSync(join(src, made), "made while the agent was stopped");

  const before = await statusJson();
  expect(before.code).toBe(1);
  const problem = before.json.sets[0]?.problems.find((p) => p.kind === "journal-problem");
  expect(problem?.message).toContain(`the journal ${journalFile} is corrupt`);
  expect(problem?.message).toMatch(reason);
  expect(problem?.message).toContain("next start");
  const asideBefore = before.json.sets[0]?.journalSetAside.length ?? 0;

  child = await startAgentProcess();
  writeFileSync(join(src, "after-the-start.txt"), `made after the start, ${_kind}`);
  const arrived = { "d/f1-with-a-longer-name-than-most.txt": changed, [removed]: undefined, [made]: "made while the agent was stopped", "after-the-start.txt": `made after the start, ${_kind}` };
  await eventually(matchesOnceArrived(arrived), 90_000);
  await eventually(async () => {
    const now = await statusJson();
    expect(now.code).toBe(0);
    expect(now.json.sets[0]).toMatchObject({ inSync: true, healthy: true });
  }, 60_000);
  const after = await status();
  const aside = after.json.sets[0]?.journalSetAside ?? [];
  expect(aside).toHaveLength(asideBefore + 1);
  const record = aside.at(-1);
  expect(record?.reason).toMatch(reason);
  // Kept as it was, never deleted; the journal in its place is a new one.
  expect(sha(record?.file ?? "")).toBe(damaged);
  expect(sha(journalFile)).not.toBe(damaged);
  expect(after.text).toContain(`state folder: the journal was found corrupt`);
  expect(after.text).toContain(record?.file);
  await stopAgent();
  // Two starts, a recovery and the status polls: beyond the default limit on a loaded machine.
}, 300_000);

it("the journal of `tidemark local --source`, found corrupt at its start: set aside, and the set resyncs", async () => {
  const state = join(work.path, "local-state");
  const source = join(work.path, "local-src");
  mkdirSync(source, { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(source, `l${i}.txt`), `local ${i}`);
  const runLocal = async (seconds: number): Promise<{ stdout: string; stderr: string }> => {
    const proc = spawnTidemark(["local", "--port", "0", "--state", state, "--source", source]);
    let stdout = "";
    let stderr = "";
    proc.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    proc.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise((resolve) => proc.once("exit", resolve));
    await eventually(async () => expect(stdout).toContain("replicating"), 100_000);
    await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
    proc.kill("SIGINT");
    await exited;
    return { stdout, stderr };
  };
  await runLocal(1);
  const file = join(state, "agent", "journal.db");
  overwrite(file, 0, Buffer.from("garbage where the SQLite header was"));
  const damaged = sha(file);
  const second = await runLocal(1);
  expect(second.stderr).toContain("the journal was found corrupt (file is not a database) and set aside");
  const aside = /set aside at \S+ as (\S+journal\.db\.corrupt-[\w-]+)/.exec(second.stderr)?.[1];
  expect(aside && sha(aside)).toBe(damaged);
  expect(second.stderr).toMatch(/beginning a new journal generation|new journal generation/);
}, 240_000);
