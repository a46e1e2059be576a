// A corrupt journal lands where a deleted one does (DESIGN 8): the agent's
// start renames it aside (kept for inspection, never deleted), records that
// for `tidemark status`, and opens a new journal, whose new generation makes
// the target resync each set behind the recovery baseline
// (recovery-baseline.ts): only what the target lacks travels. Damage is found
// when the journal opens (its header, a lost write-ahead log, a quick_check
// of every page), by the start's first reads, or by a running agent, which
// stops and leaves a mark so that its next start sets the journal aside
// without trusting it again.

import { existsSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { fsyncDir, writeJsonDurably } from "./durable-file.ts";
import { JournalCorruptError, journalFault } from "./journal-faults.ts";
import { Journal, type JournalOptions } from "./journal.ts";
import type { Logger } from "./log.ts";

/** The set-aside journals, oldest first, for status. */
const RECORD_FILE = "journal-set-aside.json";
/** Left by a running agent that found its journal corrupt: the next start sets it aside. */
const MARK_FILE = "journal-corrupt.json";

const SetAsideSchema = z.object({ at: z.string(), reason: z.string(), file: z.string(), with: z.array(z.string()) });
export type SetAsideJournal = z.infer<typeof SetAsideSchema>;
const MarkSchema = z.object({ at: z.string(), reason: z.string() });

/** The journals set aside in stateDir, oldest first (none: no record). */
export function journalsSetAside(stateDir: string): SetAsideJournal[] {
  let text: string;
  try {
    text = readFileSync(join(stateDir, RECORD_FILE), "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  return z.array(SetAsideSchema).parse(JSON.parse(text));
}

/** What a running agent found (the mark its next start acts on), or undefined. */
export function corruptMark(stateDir: string): z.infer<typeof MarkSchema> | undefined {
  try {
    return MarkSchema.parse(JSON.parse(readFileSync(join(stateDir, MARK_FILE), "utf8")));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    // A mark cut short by a crash still says the journal was found corrupt.
    return { at: "(unknown)", reason: `a mark in ${join(stateDir, MARK_FILE)} that cannot be read (${String(error)})` };
  }
}

/** Leaves the mark for the next start: a running agent found its journal corrupt. */
export function markJournalCorrupt(stateDir: string, error: JournalCorruptError): void {
  writeJsonDurably(stateDir, MARK_FILE, { at: new Date().toISOString(), reason: error.reason });
}

/** Renames the journal, its -wal and -shm and its spool folder aside and records it; returns the record. Nothing is deleted. */
export function setJournalAside(stateDir: string, reason: string, at = new Date()): SetAsideJournal {
  const path = join(stateDir, "journal.db");
  const stamp = at.toISOString().replace(/[:.]/g, "-");
  let file = `${path}.corrupt-${stamp}`;
  for (let n = 2; existsSync(file); n++) file = `${path}.corrupt-${stamp}-${n}`;
  const moved: string[] = [];
  // The -wal and -shm first: a crash between renames must not leave them beside a new journal, which SQLite would replay them into.
  for (const suffix of ["-wal", "-shm"]) {
    if (!existsSync(`${path}${suffix}`)) continue;
    renameSync(`${path}${suffix}`, `${file}${suffix}`);
    moved.push(`${file}${suffix}`);
  }
  // The contents its records name go with it: a new journal would delete them as files no row of its names, and never
  // the large ones, which would stay in its spool for good.
  const spool = join(stateDir, "spool");
  if (existsSync(spool)) {
    renameSync(spool, `${file}-spool`);
    moved.push(`${file}-spool`);
  }
  if (existsSync(path)) renameSync(path, file);
  fsyncDir(stateDir);
  const record: SetAsideJournal = { at: at.toISOString(), reason, file, with: moved };
  writeJsonDurably(stateDir, RECORD_FILE, [...journalsSetAside(stateDir), record]);
  rmSync(join(stateDir, MARK_FILE), { force: true });
  return record;
}

/** The line status and the log give a set-aside journal. */
export function setAsideLine(record: SetAsideJournal): string {
  return (
    `the journal was found corrupt (${record.reason}) and set aside at ${record.at} as ${record.file}${record.with.length > 0 ? ` (with ${record.with.join(", ")})` : ""}: ` +
    "the agent began a new journal generation and the target resyncs every set from the source; task markers journaled and not sent then were lost with it. " +
    "It is kept for inspection: remove it once no longer needed"
  );
}

/**
 * Opens the agent's journal, checked page by page, and runs `firstReads` on it. A journal found corrupt there (or
 * marked so by the agent that ran before) is set aside and a new one opened in its place; one this user may not
 * open throws JournalUnreadableError, and nothing is set aside.
 */
export function openAgentJournal(stateDir: string, log: Logger, firstReads: (journal: Journal) => void = () => undefined, options: Pick<JournalOptions, "lookRoot"> = {}): Journal {
  const mark = corruptMark(stateDir);
  // A journal moved away by hand since: nothing is left to set aside.
  if (mark !== undefined && !existsSync(join(stateDir, "journal.db"))) rmSync(join(stateDir, MARK_FILE), { force: true });
  else if (mark !== undefined) {
    const record = setJournalAside(stateDir, `found by the agent at ${mark.at}: ${mark.reason}`);
    log.warn(setAsideLine(record));
  }
  try {
    return readJournal(stateDir, firstReads, options);
  } catch (error) {
    if (!(error instanceof JournalCorruptError)) throw error;
    const record = setJournalAside(stateDir, error.reason);
    log.warn(setAsideLine(record));
    return readJournal(stateDir, firstReads, options);
  }
}

function readJournal(stateDir: string, firstReads: (journal: Journal) => void, options: Pick<JournalOptions, "lookRoot">): Journal {
  const journal = Journal.open(stateDir, { ...options, check: true });
  try {
    firstReads(journal);
    return journal;
  } catch (error) {
    try {
      journal.close();
    } catch {
      // The first error is the one to name.
    }
    throw journalFault(error, journal.path);
  }
}
