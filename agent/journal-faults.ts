// The journal's disk going wrong, named: a full disk (journaling pauses and
// resumes by itself once there is space), a corrupt journal (nothing journaled
// or sent from a damaged index can be trusted: the agent's next start sets it
// aside, journal-aside.ts, and begins a new generation as after a lost
// journal), and one the agent may not open (its permissions, left to the
// operator: nothing is wrong with its content).

import { closeSync, openSync, readSync, statfsSync, statSync } from "node:fs";
import { dirname } from "node:path";

/** SQLite's primary result codes (the low byte of an extended code). */
const SQLITE_PERM = 3;
const SQLITE_READONLY = 8;
const SQLITE_CORRUPT = 11;
const SQLITE_CANTOPEN = 14;
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

/** The journal is damaged: nothing is journaled or sent from it; the agent's next start sets it aside (journal-aside.ts). */
export class JournalCorruptError extends Error {
  override name = "JournalCorruptError";
  readonly path: string;
  /** Why, without the remedy: what the set-aside record keeps. */
  readonly reason: string;

  constructor(path: string, cause: unknown) {
    const reason = reasonOf(cause);
    super(
      `the journal ${path} is corrupt (${reason}). The agent's next start (tidemark run, or tidemark local --source) sets it aside ` +
        `(renamed ${path}.corrupt-<time>, with its -wal, -shm and spool folder; kept for inspection, never deleted) and begins a new journal generation: ` +
        "the target resyncs every set from the source (only what differs travels); task markers journaled and not yet sent are lost with it.",
      { cause },
    );
    this.path = path;
    this.reason = reason;
  }
}

/** The journal exists but this user may not open it (its owner or mode): left to the operator, nothing is set aside. */
export class JournalUnreadableError extends Error {
  override name = "JournalUnreadableError";
  readonly path: string;

  constructor(path: string, cause: unknown) {
    const uid = process.geteuid?.();
    super(
      `cannot open the journal ${path} (${reasonOf(cause)}): the user running the agent${uid !== undefined ? ` (uid ${uid})` : ""} must be able to read and write it, ` +
        `its -wal and -shm files and its folder: check them (ls -l ${dirname(path)}), fix their owner or mode, and start again. Nothing was changed.`,
      { cause },
    );
    this.path = path;
  }
}

/** The named error for a failure of the journal at path: disk full or corrupt; anything else as it was. */
export function journalFault(error: unknown, path: string): unknown {
  if (error instanceof JournalDiskFullError || error instanceof JournalCorruptError || error instanceof JournalUnreadableError) return error;
  if (isCorrupt(error)) return new JournalCorruptError(path, error);
  if (isDiskFull(error)) return new JournalDiskFullError(shape(error).path ?? path, error);
  return error;
}

/** As journalFault, for opening: a journal this user may not open (permissions) is named too. */
export function openFault(error: unknown, path: string): unknown {
  const named = journalFault(error, path);
  if (named !== error) return named;
  const code = sqliteCode(error);
  const { code: system } = shape(error);
  if (code === SQLITE_CANTOPEN || code === SQLITE_READONLY || code === SQLITE_PERM || system === "EACCES" || system === "EPERM") return new JournalUnreadableError(path, error);
  return error;
}

/** The -shm's wal-index header (SQLite's wal.c, native byte order): version, page size, frames in the WAL, frames copied back. */
const WAL_INDEX_VERSION = 3007000;
const WAL_HEADER_BYTES = 32;
const WAL_FRAME_HEADER_BYTES = 24;

/**
 * Why the journal's write-ahead log is lost, or undefined: the -shm left by an agent that did not close the journal
 * says its -wal holds commits not yet copied into the database, and the -wal is gone or shorter. Opened so, SQLite
 * would silently go on without those commits (an older journal, reusing their seqs): checked before it opens.
 */
export function lostWriteAheadLog(path: string): string | undefined {
  const header = Buffer.alloc(136);
  let fd: number;
  try {
    fd = openSync(`${path}-shm`, "r");
  } catch {
    return undefined;
  }
  let read: number;
  try {
    read = readSync(fd, header, 0, header.length, 0);
  } finally {
    closeSync(fd);
  }
  // Two copies of the header, equal unless a writer is halfway through it (nothing to conclude then).
  if (read < header.length || !header.subarray(0, 48).equals(header.subarray(48, 96))) return undefined;
  const little = header.readUInt32LE(0) === WAL_INDEX_VERSION;
  if (!little && header.readUInt32BE(0) !== WAL_INDEX_VERSION) return undefined;
  const u32 = (offset: number) => (little ? header.readUInt32LE(offset) : header.readUInt32BE(offset));
  const u16 = little ? header.readUInt16LE(14) : header.readUInt16BE(14);
  const pageSize = u16 === 1 ? 65536 : u16;
  const frames = u32(16);
  const copied = u32(96);
  if (header[12] !== 1 || frames <= copied) return undefined;
  const needed = WAL_HEADER_BYTES + frames * (pageSize + WAL_FRAME_HEADER_BYTES);
  let size: number;
  try {
    size = statSync(`${path}-wal`).size;
  } catch {
    return `its write-ahead log ${path}-wal is missing, while ${path}-shm says it held ${frames - copied} committed page(s) not yet in the database`;
  }
  if (size >= needed) return undefined;
  return `its write-ahead log ${path}-wal is ${size} bytes, while ${path}-shm says it held ${frames} page(s) (${needed} bytes), ${frames - copied} of them not yet in the database`;
}
