// A full disk under the journal: the real error is reported (which file), the
// agent backs off instead of trying every write again, and once there is
// space it resumes by itself with a catch-up scan, losing nothing. On a real
// small tmpfs too, where the tests run as root.

import { rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { JournalDiskFullError } from "../../agent/journal-faults.ts";
import type { Logger } from "../../agent/log.ts";
import { ProblemFile, readProblem, type AgentProblem } from "../../agent/problem-file.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { canMountTmpfs, mountTmpfs, unmountTmpfs } from "../support/tmpfs.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "docs";
let h: Harness;
const logged: string[] = [];
const log: Logger = { debug() {}, info: (msg) => logged.push(`info ${msg}`), warn: (msg) => logged.push(`warn ${msg}`), error: (msg, fields) => logged.push(`error ${msg} ${JSON.stringify(fields ?? {})}`) };
const problems: (AgentProblem | null)[] = [];

/** What SQLite throws when a write does not fit on the disk. */
const sqliteFull = () => Object.assign(new Error("database or disk is full"), { code: "ERR_SQLITE_ERROR", errcode: 13, errstr: "database or disk is full" });

let diskFull = false;
let writes = 0;

beforeEach(async () => {
  logged.length = 0;
  problems.length = 0;
  diskFull = false;
  writes = 0;
  h = agentHarness(SET, { log });
  h.restart(
    { log, onJournalProblem: (problem) => problems.push(problem) },
    {
      onWrite: () => {
        writes += 1;
        if (diskFull) throw sqliteFull();
      },
    },
  );
  for (let i = 0; i < 5; i++) writeFileSync(join(h.src.path, `seed-${i}`), `seed ${i}`);
  await h.agent.scan(SET);
  await h.agent.drain(SET);
});

afterEach(() => h.close());

it("reports the real error, backs off, and catches up by itself once there is space", async () => {
  diskFull = true;
  writeFileSync(join(h.src.path, "a.txt"), "written while the disk was full");
  writeFileSync(join(h.src.path, "b.txt"), "this one too");
  h.agent.hint(SET, "a.txt");
  h.agent.hint(SET, "b.txt");
  await vi.waitFor(() => expect(h.agent.health.full).toBe(true), { timeout: 30_000 });

  // The journal's file and SQLite's reason, not "cannot rollback - no transaction is active".
  expect(h.agent.health.problem?.problem).toMatch(new RegExp(`^disk full writing ${h.journal.path} \\(database or disk is full`));
  expect(problems).toEqual([expect.objectContaining({ problem: expect.stringContaining(`disk full writing ${h.journal.path}`) })]);
  expect(logged.filter((l) => l.startsWith("error disk full"))).toHaveLength(1);
  expect(logged.some((l) => l.includes("cannot rollback"))).toBe(false);

  // No spinning: hints and scans while full try no write at all.
  const tried = writes;
  writeFileSync(join(h.src.path, "c.txt"), "and this");
  h.agent.hint(SET, "c.txt");
  expect(await h.agent.processHints(SET)).toBe(0);
  expect((await h.agent.scan(SET)).stopped).toBe(true);
  expect(writes).toBe(tried);

  // A probe while the disk is still full fails and keeps the problem.
  expect(await h.agent.probeJournal()).toBe(false);
  expect(h.agent.health.full).toBe(true);

  diskFull = false;
  expect(await h.agent.probeJournal()).toBe(true);
  expect(problems.at(-1)).toBeNull();
  expect(logged).toContain("info journal writable again; catching up with a scan of every set");
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

it("sends a message again, harmlessly, when the disk filled before it was marked sent", async () => {
  writeFileSync(join(h.src.path, "a.txt"), "journaled, then the disk filled");
  await h.agent.scan(SET);
  diskFull = true;
  await expect(h.agent.drain(SET)).rejects.toBeInstanceOf(JournalDiskFullError);
  diskFull = false;
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  expect((await readSetStatus(h.store, SET)).state).toBe("in-sync");
});

it("waits for space when the disk is full at start, instead of failing", async () => {
  await h.agent.stop();
  diskFull = true;
  writeFileSync(join(h.src.path, "a.txt"), "written while the agent was down");
  h.restart(
    { log, onJournalProblem: (problem) => problems.push(problem) },
    {
      onWrite: () => {
        if (diskFull) throw sqliteFull();
      },
    },
  );
  await h.agent.start();
  expect(h.agent.health.full).toBe(true);
  diskFull = false;
  expect(await h.agent.probeJournal()).toBe(true);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

describe.skipIf(!canMountTmpfs)("on a real full tmpfs (as root, where mounting is permitted)", () => {
  it("reports the full disk with the file being written, and loses nothing once space is freed", async () => {
    const t = agentHarness(SET, { log });
    await t.agent.stop();
    // The state folder becomes a small tmpfs; the agent starts on it with a new journal (restart closes the old one).
    mountTmpfs(t.state.path, 8);
    let problemFile: ProblemFile | undefined;
    try {
      const file = ProblemFile.open(t.state.path);
      problemFile = file;
      t.restart({ log, onJournalProblem: (problem) => file.write(problem) });
      for (let i = 0; i < 5; i++) writeFileSync(join(t.src.path, `seed-${i}`), `seed ${i}`);
      await t.agent.scan(SET);
      await t.agent.drain(SET);

      // Fill it, then change files larger than what is left: one spooled, one held in the journal's row.
      const { bavail, bsize } = statfsSync(t.state.path);
      const filler = join(t.state.path, "filler");
      writeFileSync(filler, Buffer.alloc(Number(bavail) * bsize));
      writeFileSync(join(t.src.path, "big.bin"), randomBytes(2 * 1024 * 1024));
      writeFileSync(join(t.src.path, "inline.bin"), randomBytes(600 * 1024));
      t.agent.hint(SET, "big.bin");
      t.agent.hint(SET, "inline.bin");
      await vi.waitFor(() => expect(t.agent.health.full).toBe(true), { timeout: 30_000 });
      expect(t.agent.health.problem?.problem).toMatch(new RegExp(`^disk full writing ${t.state.path}/`));
      // Status reads it from the file rewritten in place: no new space needed.
      expect(readProblem(t.state.path)?.problem).toMatch(/^disk full writing /);
      expect(await t.agent.probeJournal()).toBe(false);

      rmSync(filler);
      expect(await t.agent.probeJournal()).toBe(true);
      expect(readProblem(t.state.path)).toBeNull();
      await t.agent.drain(SET);
      expect(await pictureOfTarget(t.store, SET)).toEqual(await pictureOfSource(t.src.path));
    } finally {
      // Unmounted whatever stopping throws (lazily when still busy), so no test leaves a mount.
      try {
        await t.agent.stop();
        t.journal.close();
        problemFile?.close();
      } finally {
        unmountTmpfs(t.state.path);
        t.src.remove();
        t.state.remove();
      }
    }
  });
});

it("keeps the problem for status in a file of fixed size, rewritten in place", () => {
  const dir = tempDir("tidemark-state-");
  try {
    expect(readProblem(dir.path)).toBeNull();
    const file = ProblemFile.open(dir.path);
    const size = statSync(join(dir.path, "agent-problem.json")).size;
    const problem = { problem: `disk full writing /state/journal.db ${"x".repeat(10_000)}`, since: "2026-11-30T01:00:00.000Z" };
    file.write(problem);
    expect(readProblem(dir.path)?.problem).toMatch(/^disk full writing \/state\/journal\.db x+\.\.\.$/);
    expect(statSync(join(dir.path, "agent-problem.json")).size).toBe(size);
    file.write(null);
    expect(readProblem(dir.path)).toBeNull();
    file.close();
  } finally {
    dir.remove();
  }
});
