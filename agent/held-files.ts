// Large busy files whose newest version the running agent holds back
// (busy-files.ts) are in no journal record, yet the target lacks that
// version: the agent names them in the journal's database, beside the set's
// counters, so `tidemark status` (which reads the journal, not the agent)
// lists them and does not say "in sync". A row goes once the file's newest
// version is journaled. A scan of the whole set in progress is named the
// same way: what it has not reached yet is not journaled, and the backlog may
// drain behind it. Each row carries the agent's pid and host: a row an agent
// left when it stopped is shown as such, and the agent's next start replaces
// the set's rows (its first scan captures those files).

import { hostname } from "node:os";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { BusyHold } from "./busy-files.ts";
import type { Journal } from "./journal.ts";
import { processRuns } from "./state-lock.ts";

/** A file whose newest version the agent holds back, as `tidemark status` reads it. */
export interface HeldFile {
  readonly path: string;
  /** Why it waits and until when at most. */
  readonly reason: string;
  /** When the agent began holding it (ISO 8601). */
  readonly since: string;
  /** The agent process holding it. */
  readonly pid: number;
  readonly host: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS held_files (
  set_name TEXT NOT NULL,
  path TEXT NOT NULL,
  reason TEXT NOT NULL,
  since TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  PRIMARY KEY (set_name, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scans (
  set_name TEXT PRIMARY KEY,
  since TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL
) WITHOUT ROWID;`;

/** A scan of a whole set the agent runs: when it began, and the agent process. */
export interface SetScan {
  readonly since: string;
  readonly pid: number;
  readonly host: string;
}

/** The held_files table: what the running agent holds back, per set. */
export class HeldFiles {
  readonly #hold: StatementSync;
  readonly #release: StatementSync;
  readonly #releaseAll: StatementSync;
  readonly #list: StatementSync;
  readonly #scanBegins: StatementSync;
  readonly #scanEnds: StatementSync;
  readonly #scanOf: StatementSync;

  constructor(db: DatabaseSync) {
    db.exec(SCHEMA);
    this.#hold = db.prepare(
      `INSERT INTO held_files (set_name, path, reason, since, pid, host) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (set_name, path) DO UPDATE SET reason = excluded.reason, pid = excluded.pid, host = excluded.host`,
    );
    this.#release = db.prepare("DELETE FROM held_files WHERE set_name = ? AND path = ?");
    this.#releaseAll = db.prepare("DELETE FROM held_files WHERE set_name = ?");
    this.#list = db.prepare("SELECT path, reason, since, pid, host FROM held_files WHERE set_name = ? ORDER BY path");
    this.#scanBegins = db.prepare("INSERT OR REPLACE INTO scans (set_name, since, pid, host) VALUES (?, ?, ?, ?)");
    this.#scanEnds = db.prepare("DELETE FROM scans WHERE set_name = ?");
    this.#scanOf = db.prepare("SELECT since, pid, host FROM scans WHERE set_name = ?");
  }

  scanBegins(set: string, scan: SetScan): void {
    this.#scanBegins.run(set, scan.since, scan.pid, scan.host);
  }

  scanEnds(set: string): void {
    this.#scanEnds.run(set);
  }

  /** The scan of the set in progress (or left by an agent that stopped during it), if any. */
  scanOf(set: string): SetScan | undefined {
    const row = this.#scanOf.get(set);
    return row && { since: String(row.since), pid: Number(row.pid), host: String(row.host) };
  }

  /** Records (or updates the reason of) a held file, keeping when it was first held. */
  hold(set: string, file: HeldFile): void {
    this.#hold.run(set, file.path, file.reason, file.since, file.pid, file.host);
  }

  release(set: string, path: string): void {
    this.#release.run(set, path);
  }

  releaseAll(set: string): void {
    this.#releaseAll.run(set);
  }

  of(set: string): HeldFile[] {
    return this.#list.all(set).map((row) => ({ path: String(row.path), reason: String(row.reason), since: String(row.since), pid: Number(row.pid), host: String(row.host) }));
  }
}

/** Why a file waits, in words for `tidemark status`. */
export function holdReason(hold: BusyHold | { readonly path: string; readonly waitsFor: "capture" }): string {
  switch (hold.waitsFor) {
    case "capture":
      return "its newest version is being captured";
    case "send":
      return `its previous version (seq ${hold.seq}) is not sent yet; the newest is captured once it is`;
    case "pace":
      return `the target rebuilds its previous version (seq ${hold.seq}); the newest is captured by ${new Date(hold.until).toISOString()}, or once the file is quiet`;
    case "interval":
      return `it keeps changing: captured at most once per captureIntervalMs (its previous version is seq ${hold.seq}); the newest is captured by ${new Date(hold.until).toISOString()}`;
    case "apply":
      return `the target has not applied its previous version (seq ${hold.seq}) yet; the newest is captured once it has (by ${new Date(hold.until).toISOString()} at the latest), or once the file is quiet`;
  }
}

/**
 * One set's held files as this run of the agent last wrote them: each call
 * writes only what changed (a busy file asks to be captured many times a
 * second), and the first replaces whatever an earlier run left.
 */
export class HeldFileRecord {
  readonly #journal: Journal;
  readonly #set: string;
  readonly #now: () => number;
  /** Path -> reason as written by this run; undefined before its first write. */
  #written: Map<string, string> | undefined;

  constructor(journal: Journal, set: string, now: () => number = Date.now) {
    this.#journal = journal;
    this.#set = set;
    this.#now = now;
  }

  /** Makes the journal name exactly these held files (`capturing`: released by the pacing, not journaled yet). */
  record(holds: readonly BusyHold[], capturing: Iterable<string> = []): void {
    const reasons = new Map(holds.map((hold) => [hold.path, holdReason(hold)]));
    for (const path of capturing) if (!reasons.has(path)) reasons.set(path, holdReason({ path, waitsFor: "capture" }));
    const written = this.#written;
    if (written && written.size === reasons.size && [...reasons].every(([path, reason]) => written.get(path) === reason)) return;
    const held = this.#journal.held;
    const since = new Date(this.#now()).toISOString();
    this.#journal.atomically(() => {
      if (!written) held.releaseAll(this.#set);
      else for (const path of written.keys()) if (!reasons.has(path)) held.release(this.#set, path);
      for (const [path, reason] of reasons) {
        if (written?.get(path) !== reason) held.hold(this.#set, { path, reason, since, pid: process.pid, host: hostname() });
      }
    });
    this.#written = reasons;
  }
}

/**
 * Runs a scan of the whole set with the journal naming it meanwhile. A full disk that keeps the end from being
 * recorded leaves the row: it names a scan that did not finish, which stays true until the next one.
 */
export async function namedScan<T>(journal: Journal, set: string, now: () => number, scan: () => Promise<T>): Promise<T> {
  journal.atomically(() => journal.held.scanBegins(set, { since: new Date(now()).toISOString(), pid: process.pid, host: hostname() }));
  const result = await scan();
  journal.atomically(() => journal.held.scanEnds(set));
  return result;
}

/** Whether the agent that wrote a held row still runs; one on another host (shared storage) is taken to. */
export function holderRuns(file: Pick<HeldFile, "pid" | "host">): boolean {
  return processRuns(file.pid, file.host);
}

/** A held file as `tidemark status` reports it: `agentRunning` is false when the agent holding it stopped (its next start captures the file). */
export interface HeldReport {
  readonly path: string;
  readonly reason: string;
  readonly since: string;
  readonly agentRunning: boolean;
}

/** The set's scan in progress as `tidemark status` reports it, judged like a held file. */
export function scanNow(held: HeldFiles, set: string): { since: string; agentRunning: boolean } | null {
  const scan = held.scanOf(set);
  return scan ? { since: scan.since, agentRunning: holderRuns(scan) } : null;
}

/** The set's held files, each judged by whether the agent holding it still runs. */
export function heldNow(held: HeldFiles, set: string): HeldReport[] {
  return held.of(set).map((file) => ({ path: file.path, reason: file.reason, since: file.since, agentRunning: holderRuns(file) }));
}
