// Large busy files whose newest version the running agent holds back
// (busy-files.ts) are in no journal record, yet the target lacks that
// version: the agent names them in the journal's database, beside the set's
// counters, so `tidemark status` (which reads the journal, not the agent)
// lists them and does not say "in sync". A row goes once the file's newest
// version is journaled. A scan of the whole set in progress is named the
// same way: what it has not reached yet is not journaled, and the backlog may
// drain behind it. Each row carries the agent's pid and host: a row an agent
// left when it stopped is shown as such, and the agent's next start replaces
// the set's rows (its first scan captures those files). Rows also carry the
// process's start time (process-identity.ts): a pid reused by another process
// after the agent stopped does not pass for the agent.

import { hostname } from "node:os";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { BusyHold } from "./busy-files.ts";
import { StartInterruptedError } from "./interrupt.ts";
import type { Journal } from "./journal.ts";
import { ownStart } from "./process-identity.ts";
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
  /** When that process started (process-identity.ts); absent in rows of agents before it was recorded. */
  readonly started?: string;
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
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS scan_failures (
  set_name TEXT PRIMARY KEY,
  folder TEXT NOT NULL,
  since TEXT NOT NULL,
  failed_at TEXT NOT NULL,
  error TEXT NOT NULL,
  pid INTEGER NOT NULL,
  host TEXT NOT NULL,
  started TEXT
) WITHOUT ROWID;`;

/** Adds the process start column to a table made before it existed. */
function ensureStarted(db: DatabaseSync, table: string): void {
  const columns = db.prepare(`PRAGMA table_info(${table})`).all();
  if (columns.some((column) => column.name === "started")) return;
  try {
    db.exec(`ALTER TABLE ${table} ADD COLUMN started TEXT`);
  } catch (error) {
    // The agent and `tidemark status` may open the journal at the same moment: one of them adds it.
    if (!/duplicate column/.test(String(error))) throw error;
  }
}

/** This process, as a row names the agent that wrote it. */
function thisProcess(): { pid: number; host: string; started?: string } {
  const started = ownStart();
  return { pid: process.pid, host: hostname(), ...(started !== undefined ? { started } : {}) };
}

const startedOf = (value: unknown): { started?: string } => (typeof value === "string" ? { started: value } : {});

/** A scan of a whole set the agent runs: when it began, and the agent process. */
export interface SetScan {
  readonly since: string;
  readonly pid: number;
  readonly host: string;
  readonly started?: string;
}

/** The set's last scan that failed (threw), until a later scan of the whole set (or of the same folder) succeeds. */
export interface ScanFailure extends SetScan {
  /** The folder scanned ("" for the whole set). */
  readonly folder: string;
  readonly failedAt: string;
  readonly error: string;
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
  readonly #scanFailed: StatementSync;
  readonly #scanSucceeded: StatementSync;
  readonly #failedScanOf: StatementSync;

  constructor(db: DatabaseSync) {
    db.exec(SCHEMA);
    ensureStarted(db, "held_files");
    ensureStarted(db, "scans");
    this.#hold = db.prepare(
      `INSERT INTO held_files (set_name, path, reason, since, pid, host, started) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (set_name, path) DO UPDATE SET reason = excluded.reason, pid = excluded.pid, host = excluded.host, started = excluded.started`,
    );
    this.#release = db.prepare("DELETE FROM held_files WHERE set_name = ? AND path = ?");
    this.#releaseAll = db.prepare("DELETE FROM held_files WHERE set_name = ?");
    this.#list = db.prepare("SELECT path, reason, since, pid, host, started FROM held_files WHERE set_name = ? ORDER BY path");
    this.#scanBegins = db.prepare("INSERT OR REPLACE INTO scans (set_name, since, pid, host, started) VALUES (?, ?, ?, ?, ?)");
    this.#scanEnds = db.prepare("DELETE FROM scans WHERE set_name = ?");
    this.#scanOf = db.prepare("SELECT since, pid, host, started FROM scans WHERE set_name = ?");
    this.#scanFailed = db.prepare("INSERT OR REPLACE INTO scan_failures (set_name, folder, since, failed_at, error, pid, host, started) VALUES (?, ?, ?, ?, ?, ?, ?, ?)");
    // A whole set's scan covers any folder's; a folder's covers only its own failure.
    this.#scanSucceeded = db.prepare("DELETE FROM scan_failures WHERE set_name = ? AND (? = '' OR folder = ?)");
    this.#failedScanOf = db.prepare("SELECT folder, since, failed_at, error, pid, host, started FROM scan_failures WHERE set_name = ?");
  }

  /** A scan of the set (or of one folder of it) threw: named until a later one succeeds. */
  scanFailed(set: string, failure: ScanFailure): void {
    this.#scanFailed.run(set, failure.folder, failure.since, failure.failedAt, failure.error, failure.pid, failure.host, failure.started ?? null);
  }

  scanSucceeded(set: string, folder: string): void {
    this.#scanSucceeded.run(set, folder, folder);
  }

  /** The set's last failed scan not yet followed by one that succeeded, if any. */
  failedScanOf(set: string): ScanFailure | undefined {
    const row = this.#failedScanOf.get(set);
    return (
      row && { folder: String(row.folder), since: String(row.since), failedAt: String(row.failed_at), error: String(row.error), pid: Number(row.pid), host: String(row.host), ...startedOf(row.started) }
    );
  }

  scanBegins(set: string, scan: SetScan): void {
    this.#scanBegins.run(set, scan.since, scan.pid, scan.host, scan.started ?? null);
  }

  scanEnds(set: string): void {
    this.#scanEnds.run(set);
  }

  /** The scan of the set in progress (or left by an agent that stopped during it), if any. */
  scanOf(set: string): SetScan | undefined {
    const row = this.#scanOf.get(set);
    return row && { since: String(row.since), pid: Number(row.pid), host: String(row.host), ...startedOf(row.started) };
  }

  /** Records (or updates the reason of) a held file, keeping when it was first held. */
  hold(set: string, file: HeldFile): void {
    this.#hold.run(set, file.path, file.reason, file.since, file.pid, file.host, file.started ?? null);
  }

  release(set: string, path: string): void {
    this.#release.run(set, path);
  }

  releaseAll(set: string): void {
    this.#releaseAll.run(set);
  }

  of(set: string): HeldFile[] {
    return this.#list.all(set).map((row) => ({ path: String(row.path), reason: String(row.reason), since: String(row.since), pid: Number(row.pid), host: String(row.host), ...startedOf(row.started) }));
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
    case "queued":
      return `the target has two versions of it to apply (seq ${hold.behind} and ${hold.seq}); the newest is captured once the file is quiet and seq ${hold.behind} is applied (or can have been rebuilt), or by ${new Date(hold.until).toISOString()} at the latest`;
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
        if (written?.get(path) !== reason) held.hold(this.#set, { path, reason, since, ...thisProcess() });
      }
    });
    this.#written = reasons;
  }
}

export interface NamedScanOptions {
  /** Runs in the transaction that names the scan (a full journal's mark is cleared there). */
  readonly begun?: () => void;
  /** The folder scanned, when not the whole set (a folder moved in). */
  readonly folder?: string;
}

/**
 * Runs a scan of the whole set (or of a folder) with the journal naming it meanwhile. A full disk that keeps the end
 * from being recorded leaves the row: it names a scan that did not finish, which stays true until the next one. A
 * scan that throws is named as failed, with its error, until a later one succeeds: what it had not reached is not
 * journaled.
 */
export async function namedScan<T>(journal: Journal, set: string, now: () => number, scan: () => Promise<T>, options: NamedScanOptions = {}): Promise<T> {
  const { begun, folder = "" } = options;
  const since = new Date(now()).toISOString();
  journal.atomically(() => {
    journal.held.scanBegins(set, { since, ...thisProcess() });
    begun?.();
  });
  let result: T;
  try {
    result = await scan();
  } catch (error) {
    // Stopped, not failed: the row names a scan that did not finish (its agent exits; its next start scans again).
    if (error instanceof StartInterruptedError) throw error;
    const failure = { folder, since, failedAt: new Date(now()).toISOString(), error: String(error), ...thisProcess() };
    try {
      journal.atomically(() => {
        journal.held.scanEnds(set);
        journal.held.scanFailed(set, failure);
      });
    } catch {
      // The journal cannot record it (a full disk, which status names): the scan's own error is what the caller handles.
    }
    throw error;
  }
  journal.atomically(() => {
    journal.held.scanEnds(set);
    journal.held.scanSucceeded(set, folder);
  });
  return result;
}

/**
 * Changes the watcher reported that could not be captured (nothing of them reached the index): named like a failed
 * scan of the whole set, so status does not say in sync until a later whole-set scan, which finds them, succeeds.
 */
export function captureFailed(journal: Journal, set: string, now: () => number, error: unknown): void {
  const at = new Date(now()).toISOString();
  journal.held.scanFailed(set, { folder: "", since: at, failedAt: at, error: `capturing the changes the watcher reported: ${String(error)}`, ...thisProcess() });
}

/** Whether the agent that wrote a held row still runs; one on another host (shared storage) is taken to. */
export function holderRuns(file: Pick<HeldFile, "pid" | "host" | "started">): boolean {
  return processRuns(file.pid, file.host, file.started);
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

/** The set's last failed scan as `tidemark status` reports it: `agentRunning` is false when the agent that ran it stopped (its next start scans again). */
export interface ScanFailureReport {
  readonly folder: string;
  readonly since: string;
  readonly failedAt: string;
  readonly error: string;
  readonly agentRunning: boolean;
}

export function scanFailureNow(held: HeldFiles, set: string): ScanFailureReport | null {
  const failure = held.failedScanOf(set);
  return failure ? { folder: failure.folder, since: failure.since, failedAt: failure.failedAt, error: failure.error, agentRunning: holderRuns(failure) } : null;
}

/** The set's held files, each judged by whether the agent holding it still runs. */
export function heldNow(held: HeldFiles, set: string): HeldReport[] {
  return held.of(set).map((file) => ({ path: file.path, reason: file.reason, since: file.since, agentRunning: holderRuns(file) }));
}
