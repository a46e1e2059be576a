// Small files' content journaled in bulk (a scan's batch, DESIGN 2): one file
// in the spool folder per append instead of a blob per row in SQLite. The
// file is written and fsynced (with its folder) inside the append's write
// transaction, before the rows naming it commit, so a record is durable with
// its content before it is sent, as a row's blob was. Reading it back is one
// read per run of records and sending its last record removes it whole: a
// blob cost SQLite's overflow pages written to the WAL, checkpointed, read
// back page by page and freed row by row (bench/notes.md).
//
// A file no committed row names is what a failed or interrupted append left:
// opening the journal removes such files, inside a write transaction, where
// no other process can be between writing a file and committing the rows that
// name it.
//
// A file removed, cut short or altered (not by the agent) cannot give its
// records' contents back as journaled: reading one throws ContentFileLostError
// and the file is counted lost (`lost`), so the spool repair takes its unsent
// records out of the stream and captures them again (spool-folder.ts).

import { createHash, randomUUID } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, readdirSync, rmSync, statSync, writevSync } from "node:fs";
import { join } from "node:path";
import { notWritten, ShortWriteError } from "./full-write.ts";
import type { DatabaseSync, StatementSync } from "node:sqlite";

/** A batch whose small contents add up to less than this keeps them in its rows: a file and two fsyncs cost more. */
export const CONTENT_FILE_MIN_BYTES = 256 * 1024;
const SUFFIX = ".content";
/** writev takes at most IOV_MAX (1024 on Linux) buffers a call. */
const IOV_MAX = 1024;

/** Where a record's content is in a content file. */
export interface ContentRef {
  readonly file: string;
  readonly offset: number;
  readonly length: number;
}

/** A record's content file is gone, cut short or altered (not by the agent): the record can never be sent as journaled. */
export class ContentFileLostError extends Error {
  override name = "ContentFileLostError";
  readonly file: string;
  constructor(seq: number, path: string, file: string, how: string) {
    super(`the journaled content of record ${seq} is ${how} (${path}): something changed the agent's spool folder`);
    this.file = file;
  }
}

/** The column's form of a reference: `file:offset:length`. */
export function formatRef(ref: ContentRef): string {
  return `${ref.file}:${ref.offset}:${ref.length}`;
}

export function parseRef(text: string): ContentRef {
  const [file = "", offset = "0", length = "0"] = text.split(":");
  return { file, offset: Number(offset), length: Number(length) };
}

function isContentFile(name: string): boolean {
  return name.endsWith(SUFFIX);
}

/** Writes the pieces into a new content file in spoolDir, durable (file and folder fsynced) when it returns. */
function writeContentFile(spoolDir: string, pieces: readonly Uint8Array[]): { file: string; refs: ContentRef[] } {
  // A cleaner may have removed the folder: journaling goes on into a new one (the spool repair notices the change).
  mkdirSync(spoolDir, { recursive: true });
  const file = `${randomUUID()}${SUFFIX}`;
  const path = join(spoolDir, file);
  const refs: ContentRef[] = [];
  let offset = 0;
  for (const piece of pieces) {
    refs.push({ file, offset, length: piece.length });
    offset += piece.length;
  }
  const fd = openSync(path, "wx");
  let open = true;
  try {
    for (let i = 0; i < pieces.length; i += IOV_MAX) writeAll(fd, path, pieces.slice(i, i + IOV_MAX));
    fsyncSync(fd);
    open = false;
    // A close or a folder fsync that fails (EIO) leaves the file as unsure as a failed write: it goes too.
    closeSync(fd);
    syncFolder(spoolDir);
  } catch (error) {
    if (open) closeSync(fd);
    rmSync(path, { force: true });
    throw error;
  }
  return { file, refs };
}

/** writev may write less than asked (a signal, a full disk part way): what is left goes again; a write that takes nothing fails. */
function writeAll(fd: number, file: string, pieces: Uint8Array[]): void {
  let left = pieces.filter((piece) => piece.length > 0);
  while (left.length > 0) {
    const written = writevSync(fd, left);
    if (written <= 0) throw new ShortWriteError(`${file}: the disk took none of the last ${left.reduce((sum, piece) => sum + piece.length, 0)} bytes (full disk or quota?)`);
    left = notWritten(left, written);
  }
}

function syncFolder(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads records' contents back: consecutive references into one file are read with one read. `refs[i]` undefined
 * means record i has none. Throws ContentFileLostError (naming the first record of the run) for a missing file.
 */
function readContents(spoolDir: string, refs: readonly (ContentRef | undefined)[], seqs: readonly number[]): (Buffer | undefined)[] {
  const out: (Buffer | undefined)[] = new Array<Buffer | undefined>(refs.length);
  let i = 0;
  while (i < refs.length) {
    const ref = refs[i];
    if (!ref) {
      i += 1;
      continue;
    }
    // A run: the following references into the same file, each right after the one before.
    let end = i + 1;
    let span = ref.length;
    for (let next = refs[end]; next && next.file === ref.file && next.offset === ref.offset + span; next = refs[end]) {
      span += next.length;
      end += 1;
    }
    const bytes = readSpan(spoolDir, ref.file, ref.offset, span, seqs[i] ?? 0);
    for (let at = 0, k = i; k < end; k++) {
      const length = refs[k]?.length ?? 0;
      out[k] = bytes.subarray(at, at + length);
      at += length;
    }
    i = end;
  }
  return out;
}

function readSpan(spoolDir: string, file: string, offset: number, length: number, seq: number): Buffer {
  const path = join(spoolDir, file);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") throw new ContentFileLostError(seq, path, file, "gone");
    throw error;
  }
  try {
    const bytes = Buffer.allocUnsafe(length);
    let read = 0;
    while (read < length) {
      const n = readSync(fd, bytes, read, length - read, offset + read);
      // Shorter than journaled: the file was cut (not by the agent); its content is as lost as a removed file's.
      if (n === 0) throw new ContentFileLostError(seq, path, file, "cut short");
      read += n;
    }
    return bytes;
  } finally {
    closeSync(fd);
  }
}

/** Removes the content files in spoolDir that `named` does not hold (left by appends that did not commit). */
function removeOrphanContentFiles(spoolDir: string, named: ReadonlySet<string>): void {
  let names: string[];
  try {
    names = readdirSync(spoolDir);
  } catch {
    return;
  }
  for (const name of names) {
    if (!isContentFile(name) || named.has(name)) continue;
    // Best effort: a leftover no row names is never read, so one that cannot be removed (not ours, a folder by that
    // name) stays rather than stopping the journal from opening, and so the agent and `status` from starting.
    try {
      rmSync(join(spoolDir, name), { force: true });
    } catch {
      continue;
    }
  }
}

/**
 * The journal's content files (in its database: which file holds the contents of which set's records, up to which
 * seq). Used inside the journal's write transactions.
 */
export class ContentFiles {
  readonly #db: DatabaseSync;
  readonly #spoolDir: string;
  readonly #insert: StatementSync;
  readonly #sent: StatementSync;
  readonly #deleteSent: StatementSync;
  /** Files a read found gone, cut short or altered in this process: their unsent records are lost (`lost`). */
  readonly #damaged = new Set<string>();

  /** removeOrphans: false for a process that only reads the journal (status), which takes no write lock. */
  constructor(db: DatabaseSync, spoolDir: string, removeOrphans = true) {
    this.#db = db;
    this.#spoolDir = spoolDir;
    db.exec("CREATE TABLE IF NOT EXISTS content_files (set_name TEXT NOT NULL, file TEXT NOT NULL, last_seq INTEGER NOT NULL, PRIMARY KEY (set_name, file)) WITHOUT ROWID");
    const columns = db.prepare("PRAGMA table_info(journal)").all() as { name: string }[];
    // Where a record's content is when it is not in its row (`file:offset:length`); NULL for every row of older journals.
    if (!columns.some((c) => c.name === "content_at")) db.exec("ALTER TABLE journal ADD COLUMN content_at TEXT");
    this.#insert = db.prepare("INSERT INTO content_files (set_name, file, last_seq) VALUES (?, ?, ?)");
    this.#sent = db.prepare("SELECT file FROM content_files WHERE set_name = ? AND last_seq <= ?");
    this.#deleteSent = db.prepare("DELETE FROM content_files WHERE set_name = ? AND last_seq <= ?");
    if (removeOrphans) this.#removeOrphans();
  }

  /** In a write transaction: writes the pieces of records up to lastSeq into a new content file, durable on return. */
  write(set: string, lastSeq: number, pieces: readonly Uint8Array[]): ContentRef[] {
    const { file, refs } = writeContentFile(this.#spoolDir, pieces);
    try {
      this.#insert.run(set, file, lastSeq);
    } catch (error) {
      rmSync(join(this.#spoolDir, file), { force: true });
      throw error;
    }
    return refs;
  }

  /** The transaction that wrote the file was rolled back: it goes. */
  discard(file: string | undefined): void {
    if (file) rmSync(join(this.#spoolDir, file), { force: true });
  }

  /** In markSent's transaction: forgets the set's files whose records are all sent; returns them, to remove after the commit. */
  sent(set: string, lastSeq: number): string[] {
    const files = (this.#sent.all(set, lastSeq) as { file: string }[]).map((row) => row.file);
    if (files.length > 0) this.#deleteSent.run(set, lastSeq);
    return files;
  }

  read(refs: readonly (ContentRef | undefined)[], seqs: readonly number[]): (Buffer | undefined)[] {
    try {
      return readContents(this.#spoolDir, refs, seqs);
    } catch (error) {
      if (error instanceof ContentFileLostError) this.#damaged.add(error.file);
      throw error;
    }
  }

  /** A record's content read back from its file is what was journaled (its sha256); throws ContentFileLostError when not. */
  check(ref: ContentRef, seq: number, bytes: Uint8Array, sha256: string): void {
    if (createHash("sha256").update(bytes).digest("hex") === sha256) return;
    this.#damaged.add(ref.file);
    throw new ContentFileLostError(seq, join(this.#spoolDir, ref.file), ref.file, "altered (its sha256 differs)");
  }

  /** Whether the content at ref cannot be read back as journaled: its file is gone, shorter than ref needs, or a read found it altered. */
  lost(ref: ContentRef): boolean {
    if (this.#damaged.has(ref.file)) return true;
    const size = statSync(join(this.#spoolDir, ref.file), { throwIfNoEntry: false })?.size;
    return size === undefined || size < ref.offset + ref.length;
  }

  /** At open, in a write transaction (no append of another process is between its file and its commit): files no committed row names are leftovers of failed appends. */
  #removeOrphans(): void {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const named = new Set((this.#db.prepare("SELECT file FROM content_files").all() as { file: string }[]).map((row) => row.file));
      removeOrphanContentFiles(this.#spoolDir, named);
    } finally {
      this.#db.exec("COMMIT");
    }
  }
}
