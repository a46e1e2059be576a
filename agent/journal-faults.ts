// The journal's disk going wrong, named: a full disk (journaling pauses and
// resumes by itself once there is space) and a corrupt journal (the agent
// exits, naming the file and the safe remedy, since nothing it journals or
// sends from a damaged index can be trusted).

import { statfsSync } from "node:fs";
import { dirname } from "node:path";

/** SQLite's primary result codes (the low byte of an extended code). */
const SQLITE_CORRUPT = 11;
const SQLITE_FULL = 13;
const SQLITE_NOTADB = 26;

interface SqliteErrorShape {
  code?: string;
  errcode?: number;
  errstr?: string;
  path?: string;
}

function shape(error: unknown): SqliteErrorShape {
  return typeof error === "object" && error !== null ? (error as SqliteErrorShape) : {};
}

/** SQLite's primary result code of a node:sqlite error, or undefined for any other error. */
export function sqliteCode(error: unknown): number | undefined {
  const { code, errcode } = shape(error);
  return code === "ERR_SQLITE_ERROR" && typeof errcode === "number" ? errcode & 0xff : undefined;
}

/** A write failed because the disk (or the user's quota) is full: SQLite's SQLITE_FULL or the system's ENOSPC/EDQUOT. */
export function isDiskFull(error: unknown): boolean {
  if (error instanceof JournalDiskFullError) return true;
  const { code } = shape(error);
  return sqliteCode(error) === SQLITE_FULL || code === "ENOSPC" || code === "EDQUOT";
}

/** The journal's file is damaged or not a database at all. */
export function isCorrupt(error: unknown): boolean {
  if (error instanceof JournalCorruptError) return true;
  const code = sqliteCode(error);
  return code === SQLITE_CORRUPT || code === SQLITE_NOTADB;
}

/** Bytes free to this user on the filesystem holding path, when the system says. */
export function freeBytes(path: string): number | undefined {
  try {
    const fs = statfsSync(dirname(path));
    return fs.bavail * fs.bsize;
  } catch {
    return undefined;
  }
}

function reasonOf(error: unknown): string {
  const { errstr } = shape(error);
  return errstr ?? (error instanceof Error ? error.message : String(error));
}

/** A write to the agent's state folder failed for lack of space. */
export class JournalDiskFullError extends Error {
  override name = "JournalDiskFullError";
  readonly path: string;

  constructor(path: string, cause: unknown) {
    const free = freeBytes(path);
    super(`disk full writing ${path} (${reasonOf(cause)}${free !== undefined ? `, ${free} bytes free` : ""})`, { cause });
    this.path = path;
  }
}

/** The journal cannot be read: the agent stops rather than replicate from a damaged index. */
export class JournalCorruptError extends Error {
  override name = "JournalCorruptError";
  readonly path: string;

  constructor(path: string, cause: unknown) {
    super(
      `the journal ${path} is corrupt (${reasonOf(cause)}). Safe remedy: stop the agent, move the journal aside ` +
        `(mv ${path} ${path}.corrupt, with ${path}-wal and ${path}-shm if present) and start it again: ` +
        "it begins a new journal generation and the target resyncs every set from the source.",
      { cause },
    );
    this.path = path;
  }
}

/** The named error for a failure of the journal at path: disk full or corrupt; anything else as it was. */
export function journalFault(error: unknown, path: string): unknown {
  if (error instanceof JournalDiskFullError || error instanceof JournalCorruptError) return error;
  if (isCorrupt(error)) return new JournalCorruptError(path, error);
  if (isDiskFull(error)) return new JournalDiskFullError(shape(error).path ?? path, error);
  return error;
}
