// The agent's start on a corrupt journal (journal-aside.ts): the journal is
// set aside (renamed, with its -wal, -shm and spool folder, never deleted), recorded for
// status, and a new one opened; one marked corrupt by the agent that ran
// before is set aside without being trusted again; a sound journal and a live
// one with its write-ahead log stay; one this user may not open is refused,
// named, and left where it is.

import { chownSync, chmodSync, copyFileSync, existsSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { journalsSetAside, markJournalCorrupt, openAgentJournal } from "../../agent/journal-aside.ts";
import { JournalCorruptError, JournalUnreadableError } from "../../agent/journal-faults.ts";
import { Journal } from "../../agent/journal.ts";
import { silentLogger } from "../../agent/log.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";
const NOBODY = 65534;
const cleanup: (() => void)[] = [];
afterEach(() => {
  if (process.geteuid?.() !== 0 && process.getuid?.() === 0) process.seteuid?.(0);
  for (const step of cleanup.splice(0)) step();
});

function stateWithJournal(): { dir: string; file: string; generation: string } {
  const state = tempDir("tidemark-state-");
  cleanup.push(() => state.remove());
  const journal = Journal.open(state.path);
  journal.append(SET, Array.from({ length: 300 }, (_, i) => ({ op: "mkdir" as const, path: `folder-${i}/with/a/long/enough/name`, mode: 0o755, mtimeNs: "1" })));
  const generation = journal.sets.generation(SET).id;
  journal.close();
  return { dir: state.path, file: join(state.path, "journal.db"), generation };
}

it("sets a journal cut short aside, records it, and opens a new one with a new generation", () => {
  const { dir, file, generation } = stateWithJournal();
  truncateSync(file, 3 * 4096 + 100);
  writeFileSync(join(dir, "spool", "kept.bin"), "a large content the damaged journal names");
  const damaged = readFileSync(file);
  const journal = openAgentJournal(dir, silentLogger);
  try {
    expect(journal.sets.known(SET)).toBe(false);
    expect(journal.sets.generation(SET).id).not.toBe(generation);
  } finally {
    journal.close();
  }
  const [record] = journalsSetAside(dir);
  expect(record?.file).toMatch(/journal\.db\.corrupt-\d{4}-\d\d-\d\dT/);
  expect(readFileSync(record?.file ?? "")).toEqual(damaged);
  expect(record?.reason).toBeTruthy();
  // Its spool goes with it, contents and all; the new journal has a spool of its own.
  expect(readdirSync(`${record?.file}-spool`)).toEqual(["kept.bin"]);
  expect(readdirSync(join(dir, "spool"))).toEqual([]);
});

it("sets aside a journal its previous agent marked corrupt, even when every page still reads", () => {
  const { dir, file } = stateWithJournal();
  markJournalCorrupt(dir, new JournalCorruptError(file, new Error("database disk image is malformed")));
  openAgentJournal(dir, silentLogger).close();
  const records = journalsSetAside(dir);
  expect(records).toHaveLength(1);
  expect(records[0]?.reason).toMatch(/^found by the agent at .*: database disk image is malformed$/);
  // The mark is used up: the next start keeps the new journal.
  openAgentJournal(dir, silentLogger).close();
  expect(journalsSetAside(dir)).toHaveLength(1);
});

it("drops the mark of a journal moved away by hand since: nothing is set aside, a new journal begins", () => {
  const { dir, file } = stateWithJournal();
  markJournalCorrupt(dir, new JournalCorruptError(file, new Error("database disk image is malformed")));
  rmSync(file);
  openAgentJournal(dir, silentLogger).close();
  expect(journalsSetAside(dir)).toEqual([]);
  expect(existsSync(join(dir, "journal-corrupt.json"))).toBe(false);
});

it("keeps a sound journal", () => {
  const { dir, generation } = stateWithJournal();
  const journal = openAgentJournal(dir, silentLogger);
  try {
    expect(journal.sets.generation(SET).id).toBe(generation);
  } finally {
    journal.close();
  }
  expect(journalsSetAside(dir)).toEqual([]);
});

it("refuses a journal whose -wal is gone while its -shm says it held commits, before SQLite opens it; a live one opens", () => {
  const { dir, file } = stateWithJournal();
  const live = Journal.open(dir);
  cleanup.push(() => live.close());
  live.append(SET, [{ op: "mkdir", path: "made-after", mode: 0o755, mtimeNs: "1" }]);
  // Another process reads while the writer holds it open: the -wal is there.
  Journal.open(dir, { reader: true }).close();
  const copy = tempDir("tidemark-state-");
  cleanup.push(() => copy.remove());
  copyFileSync(file, join(copy.path, "journal.db"));
  copyFileSync(`${file}-shm`, join(copy.path, "journal.db-shm"));
  const shm = readFileSync(join(copy.path, "journal.db-shm"));
  expect(() => Journal.open(copy.path, { reader: true })).toThrow(/write-ahead log .*journal\.db-wal is missing/);
  expect(readFileSync(join(copy.path, "journal.db-shm"))).toEqual(shm);
  openAgentJournal(copy.path, silentLogger).close();
  const [record] = journalsSetAside(copy.path);
  expect(record?.with).toEqual([`${record?.file}-shm`, `${record?.file}-spool`]);
  expect(existsSync(`${record?.file}-shm`)).toBe(true);
});

it.runIf(process.getuid?.() === 0)("refuses a journal this user may not open, naming it, and sets nothing aside", () => {
  const { dir, file } = stateWithJournal();
  chownSync(dir, NOBODY, NOBODY);
  chownSync(join(dir, "spool"), NOBODY, NOBODY);
  chmodSync(file, 0o600);
  const before = statSync(file);
  process.seteuid?.(NOBODY);
  let thrown: unknown;
  try {
    openAgentJournal(dir, silentLogger).close();
  } catch (error) {
    thrown = error;
  } finally {
    process.seteuid?.(0);
  }
  expect(thrown).toBeInstanceOf(JournalUnreadableError);
  expect((thrown as Error).message).toContain(`cannot open the journal ${file}`);
  expect((thrown as Error).message).toContain(`uid ${NOBODY}`);
  expect(statSync(file).ino).toBe(before.ino);
  expect(readdirSync(dir).filter((name) => name.includes("corrupt"))).toEqual([]);
});
