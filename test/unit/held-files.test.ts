// A busy large file whose newest version the agent holds back (busy-files.ts)
// is named in the journal while it waits (held-files.ts), so `tidemark
// status`, which reads the journal, does not call the set in sync; the name
// goes once that version is journaled, and a stopped agent's names are shown
// as such and replaced when it starts again. Clocks are stepped by hand.

import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterEach, expect, it } from "vitest";
import { HeldFiles, heldNow, scanNow } from "../../agent/held-files.ts";
import { processStart } from "../../agent/process-identity.ts";
import { Journal } from "../../agent/journal.ts";
import { caughtUp, findProblems, type SetFacts } from "../../agent/set-health.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { busyPut as put, steppedBusyFiles } from "../support/busy-file.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "db";
let h: Harness;
let opened: Harness | undefined;

afterEach(async () => {
  await opened?.close();
  opened = undefined;
});

function harness(now: () => number): Harness {
  h = agentHarness(SET, { coalesceBytes: 256 * 1024, busyFiles: { bytesPerSecond: 30 * 1024, quietMs: 300, now } });
  opened = h;
  return h;
}

const write = (name: string, content: string | Buffer) => writeFileSync(join(h.src.path, name), content);

async function change(path: string): Promise<void> {
  write(path, randomBytes(300 * 1024));
  h.agent.hint(SET, path);
  await h.agent.processHints(SET);
}

/** What `tidemark status` judges the set by, read from the journal and the target as it does. */
async function facts(): Promise<SetFacts> {
  return {
    set: SET,
    counters: h.journal.sets.counters(SET),
    generation: h.journal.sets.knownGeneration(SET),
    held: heldNow(h.journal.held, SET),
    scanning: scanNow(h.journal.held, SET),
    target: { status: await readSetStatus(h.store, SET) },
    now: new Date(),
  };
}

it("names a busy file whose newest version waits in the journal, with why, until that version is journaled; the set is not in sync meanwhile", async () => {
  let now = 1_000_000;
  // 300 KiB at 30 KiB/s: a pace of 10 s, unless the file goes quiet for a tenth of it (1 s).
  harness(() => now);
  write("big.db", randomBytes(300 * 1024));
  write("small.txt", "small");
  await h.agent.scan(SET);
  expect(heldNow(h.journal.held, SET)).toEqual([]);

  // The first version is not sent yet: the next one waits for it.
  await change("big.db");
  expect(heldNow(h.journal.held, SET)).toEqual([{ path: "big.db", reason: expect.stringContaining("(seq 1) is not sent yet") as string, since: new Date(now).toISOString(), agentRunning: true }]);

  // Sent and applied, but within its pace: everything journaled is on the target, and still the set is not in sync.
  await h.agent.drain(SET);
  const [held] = heldNow(h.journal.held, SET);
  expect(held?.reason).toContain(`the target rebuilds its previous version (seq 1); the newest is captured by ${new Date(now + 10_000).toISOString()}`);
  expect(held?.since).toBe(new Date(now).toISOString());
  const waiting = await facts();
  expect(waiting.counters.backlogRecords).toBe(0);
  expect(findProblems(waiting)).toEqual([]);
  expect(caughtUp(waiting)).toBe(false);
  expect(caughtUp({ ...waiting, held: [] })).toBe(true);

  // Quiet: the newest version is journaled (and sent), and the name goes with it.
  now += 1000;
  await h.agent.drain(SET);
  expect(heldNow(h.journal.held, SET)).toEqual([]);
  expect(caughtUp(await facts())).toBe(true);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("shows a name a stopped agent left as such, and the next start replaces it once its scan captured the file", async () => {
  let now = 1_000_000;
  harness(() => now);
  write("big.db", randomBytes(300 * 1024));
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  await change("big.db");
  expect(heldNow(h.journal.held, SET).map((f) => f.path)).toEqual(["big.db"]);
  await h.shutdown();

  // The agent's process is gone (a pid that exited stands for it): the row says so instead of claiming a wait.
  const journal = Journal.open(h.state.path);
  const [row] = journal.held.of(SET);
  if (!row) throw new Error("no held row");
  const gone = spawnSync(process.execPath, ["-e", ""]).pid;
  journal.held.hold(SET, { ...row, pid: gone });
  expect(heldNow(journal.held, SET)).toEqual([expect.objectContaining({ path: "big.db", agentRunning: false })]);
  // A live pid is not the agent when it started at another time (the agent's pid reused): its row was written with its start.
  expect(row.started).toBe(processStart(process.pid));
  journal.held.hold(SET, { ...row, pid: process.pid, started: "another-boot:1" });
  expect(heldNow(journal.held, SET)).toEqual([expect.objectContaining({ path: "big.db", agentRunning: false })]);
  journal.held.hold(SET, { ...row, pid: process.pid });
  expect(heldNow(journal.held, SET)).toEqual([expect.objectContaining({ path: "big.db", agentRunning: true })]);
  journal.close();

  // Started again: its first scan journals the newest version, and nothing is named held any more.
  now += 60_000;
  h.restart({ busyFiles: { bytesPerSecond: 30 * 1024, quietMs: 300, now: () => now } });
  expect(heldNow(h.journal.held, SET).map((f) => f.path)).toEqual(["big.db"]);
  await h.agent.scan(SET);
  expect(heldNow(h.journal.held, SET)).toEqual([]);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("tells what a held file waits for: its previous version sent, paced, or applied by the target", () => {
  // 1 MiB at 1 MiB/s: a pace of 1 s, 8 s at the most for the target to apply it; the clock stands still.
  const busy = steppedBusyFiles({ now: 0 });
  busy.journaled([put], [7]);
  expect(busy.held(6)).toEqual([]);
  expect(busy.defer("app.db", 6)).toBe(true);
  expect(busy.held(6)).toEqual([{ path: "app.db", seq: 7, waitsFor: "send" }]);
  expect(busy.held(7)).toEqual([{ path: "app.db", seq: 7, waitsFor: "pace", until: 1000 }]);
  busy.applied(6);
  expect(busy.held(7)).toEqual([{ path: "app.db", seq: 7, waitsFor: "apply", until: 8000 }]);
  busy.applied(7);
  expect(busy.ready(7)).toEqual(["app.db"]);
  expect(busy.held(7)).toEqual([]);
});

it("names a scan of the whole set while it runs, so status does not say in sync while the backlog drains behind it", async () => {
  harness(() => 1_000_000);
  write("a.txt", "a");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect(scanNow(h.journal.held, SET)).toBeNull();
  expect(caughtUp(await facts())).toBe(true);

  // A full mirror: everything it journaled so far is sent and applied, yet it has not finished.
  const during: ReturnType<typeof scanNow>[] = [];
  await h.agent.fullMirror(SET, "test", () => during.push(scanNow(h.journal.held, SET)));
  expect(during.length).toBeGreaterThan(0);
  expect(during[0]).toEqual({ since: new Date(1_000_000).toISOString(), agentRunning: true });
  expect(scanNow(h.journal.held, SET)).toBeNull();
  await h.agent.drain(SET);
  expect(caughtUp(await facts())).toBe(true);
  expect(caughtUp({ ...(await facts()), scanning: { since: new Date(1_000_000).toISOString(), agentRunning: true } })).toBe(false);
});

it("opens a journal whose held-file and scan tables predate the process start column, and judges their rows by pid alone", () => {
  const dir = tempDir();
  try {
    const db = new DatabaseSync(join(dir.path, "old.db"));
    db.exec(`CREATE TABLE held_files (set_name TEXT NOT NULL, path TEXT NOT NULL, reason TEXT NOT NULL, since TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL, PRIMARY KEY (set_name, path)) WITHOUT ROWID;
      CREATE TABLE scans (set_name TEXT PRIMARY KEY, since TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL) WITHOUT ROWID;`);
    db.prepare("INSERT INTO held_files VALUES (?, ?, ?, ?, ?, ?)").run(SET, "old.db", "waits", "2026-11-30T01:00:00.000Z", process.pid, hostname());
    db.prepare("INSERT INTO scans VALUES (?, ?, ?, ?)").run(SET, "2026-11-30T01:00:00.000Z", process.pid, hostname());
    const held = new HeldFiles(db);
    expect(heldNow(held, SET)).toEqual([expect.objectContaining({ path: "old.db", agentRunning: true })]);
    expect(scanNow(held, SET)).toEqual({ since: "2026-11-30T01:00:00.000Z", agentRunning: true });
    held.scanBegins(SET, { since: "2026-11-30T02:00:00.000Z", pid: process.pid, host: hostname(), started: "another-boot:1" });
    expect(scanNow(held, SET)?.agentRunning).toBe(false);
    db.close();
  } finally {
    dir.remove();
  }
});
