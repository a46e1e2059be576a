// The agent's durable journal (DESIGN 2): every change gets the next seq of
// its set and is on disk (SQLite WAL, fsync on commit) before anything is
// sent; a record leaves only after the queue accepted the message holding it.
// The same database holds the index: the state of every entry as journaled,
// which barrier scans compare the source against.

import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { EntryKind, OrphanPolicy } from "../contract/layout.ts";
import { parentOf } from "../contract/paths.ts";
import { blockCount, deltaBytes } from "../contract/wire.ts";
import type { ByteRange } from "../contract/delta-ranges.ts";
import type { TaskFields } from "../contract/tasks.ts";
import { journalFault } from "./journal-faults.ts";
import { SkippedNames } from "./skipped-names.ts";
import { ChunkIndex } from "./chunk-index.ts";
import type { DrillReport } from "../contract/drills.ts";
import type { SetDigest } from "../contract/digest.ts";

/** A change as the agent journals it. Content is captured when journaled, so later writes cannot leak into it. */
export type Change =
  | {
      op: "put";
      path: string;
      size: number;
      mode: number;
      mtimeNs: string;
      sha256: string;
      /** Small content lives in the journal row; large content in a spool file under the state dir. */
      content: { bytes: Uint8Array } | { spool: string };
      /** Only these blocks (or byte ranges, blocks then empty) travel (content holds them); the target has the rest in the object whose sha256 is base. */
      delta?: { base: string; blocks: number[]; ranges?: ByteRange[]; contentSha256: string };
      /** sha256 of each BLOCK_SIZE block, concatenated: kept in the index for the next delta, never sent. */
      blockHashes?: Uint8Array;
      /** Fingerprint of each 4 KiB chunk (chunk-hash.ts): kept in the chunk index for the next delta, never sent. */
      chunkHashes?: Uint8Array;
      /** Shared by files that were hard links of one another when read (restored as links). */
      linkGroup?: string;
    }
  | { op: "mkdir"; path: string; mode: number; mtimeNs: string }
  | { op: "symlink"; path: string; target: string; mtimeNs: string }
  | { op: "delete"; path: string }
  /** A file moved: the target moves its object instead of receiving the bytes again. */
  | { op: "rename"; from: string; to: string }
  /** Compare the target with this manifest of the set (gzip'ed JSON lines) when the applier reaches it. */
  | {
      op: "verify";
      id: string;
      deep: boolean;
      orphans: OrphanPolicy;
      size: number;
      sha256: string;
      content: { bytes: Uint8Array } | { spool: string };
    }
  | { op: "resync"; reason: string }
  /** A task marker: journaled right behind a barrier scan, so everything the source held before it is ahead of it. */
  | {
      op: "task";
      id: string;
      fields: TaskFields;
      /** Run by the agent just before the message holding the marker is sent (ONTRANSMIT); never sent. */
      onTransmit?: string;
      /** What the index held at the barrier (agent/marker-digest.ts); `content` holds the digest's list. */
      digest?: SetDigest & { list?: { size: number; sha256: string } };
      content?: { bytes: Uint8Array } | { spool: string };
    }
  /** A record the target refused for good, in its place: the seq travels so the chain stays contiguous (poison.ts). */
  | { op: "skip"; path: string; reason: string }
  /** Snapshots beyond the newest `keep` are deleted by the applier when it reaches this. */
  | { op: "prune"; id: string; keep: number }
  /** A recovery drill's report, written to the target by the applier. */
  | { op: "drill"; report: DrillReport }
  /** A block of a volume set as read (zeros travel as `zero`); volumeSize is the volume's size when it was read. */
  | { op: "block"; index: number; volumeSize: number; sha256: string; content: { bytes: Uint8Array } | { zero: true } };

/** A journaled change: its seq, and when it was journaled (ms since the epoch; absent in rows of older agents). */
export type JournalRecord = Change & { seq: number; at?: number };

/** What the index knows of one entry of a set: its state as last journaled. */
export interface IndexEntry {
  path: string;
  kind: EntryKind;
  size: number;
  mode: number;
  mtimeNs: string;
  sha256: string | null;
  link: string | null;
  /** sha256 of each block of a large file, concatenated (32 bytes a block); null for small files. */
  blocks: Uint8Array | null;
}

/** The part of an index entry a stat can be compared with. */
export type IndexStat = Pick<IndexEntry, "kind" | "size" | "mode" | "mtimeNs">;

export interface SetCounters {
  /** Seq the next change will get. */
  nextSeq: number;
  /** Last seq the queue accepted. */
  sentSeq: number;
  backlogRecords: number;
  backlogBytes: number;
  messagesSent: number;
  bytesSent: number;
  lastSendError: string | null;
  /** The backlog hit the journal limit: changes since then are not journaled until a catch-up scan. */
  overflowed: boolean;
  /** Why the watcher of the set stopped working, while it does not. */
  watcherProblem: string | null;
}

interface RecordRow {
  seq: number;
  change: string;
  content: Uint8Array | null;
}

interface EntryRow {
  path: string;
  kind: string;
  size: number;
  mode: number;
  mtime_ns: string;
  sha256: string | null;
  link: string | null;
  blocks: Uint8Array | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sets (
  name TEXT PRIMARY KEY,
  next_seq INTEGER NOT NULL,
  sent_seq INTEGER NOT NULL,
  messages_sent INTEGER NOT NULL DEFAULT 0,
  bytes_sent INTEGER NOT NULL DEFAULT 0,
  last_send_error TEXT,
  overflowed INTEGER NOT NULL DEFAULT 0,
  watcher_problem TEXT,
  backlog_records INTEGER NOT NULL DEFAULT 0,
  backlog_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS journal (
  set_name TEXT NOT NULL,
  seq INTEGER NOT NULL,
  change TEXT NOT NULL,
  content BLOB,
  bytes INTEGER NOT NULL,
  PRIMARY KEY (set_name, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS entries (
  set_name TEXT NOT NULL,
  path TEXT NOT NULL,
  parent TEXT NOT NULL,
  kind TEXT NOT NULL,
  size INTEGER NOT NULL,
  mode INTEGER NOT NULL,
  mtime_ns TEXT NOT NULL,
  sha256 TEXT,
  link TEXT,
  blocks BLOB,
  PRIMARY KEY (set_name, path)
) WITHOUT ROWID;
-- Volume sets: the sha256 of each block as journaled, and the volume's size and file stamp at the last full scan.
CREATE TABLE IF NOT EXISTS volume_blocks (
  set_name TEXT NOT NULL,
  idx INTEGER NOT NULL,
  sha256 TEXT NOT NULL,
  PRIMARY KEY (set_name, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS volumes (
  set_name TEXT PRIMARY KEY,
  size INTEGER NOT NULL,
  stamp TEXT
);
-- Each set's journal generation (DESIGN 8): made with the journal, replaced when the target is found ahead of it.
CREATE TABLE IF NOT EXISTS generations (
  set_name TEXT PRIMARY KEY,
  id TEXT NOT NULL,
  since_seq INTEGER NOT NULL
);
-- Paths whose latest change the target refused for good: not replicated until a later change of them is delivered.
CREATE TABLE IF NOT EXISTS skipped (
  set_name TEXT NOT NULL,
  path TEXT NOT NULL,
  seq INTEGER NOT NULL,
  reason TEXT NOT NULL,
  since TEXT NOT NULL,
  PRIMARY KEY (set_name, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_by_parent ON entries (set_name, parent);
-- Covers what a scan compares a folder's entries by: the scan reads no table rows.
CREATE INDEX IF NOT EXISTS entries_stat_by_parent ON entries (set_name, parent, path, kind, size, mode, mtime_ns);
`;

/** The kind column holds what #index wrote: anything else is a damaged journal. */
function entryKind(kind: string): EntryKind {
  if (kind === "file" || kind === "dir" || kind === "symlink") return kind;
  throw new Error(`journal index holds an entry of unknown kind "${kind}"`);
}

function toEntry(row: EntryRow): IndexEntry {
  return {
    path: row.path,
    kind: entryKind(row.kind),
    size: row.size,
    mode: row.mode,
    mtimeNs: row.mtime_ns,
    sha256: row.sha256,
    link: row.link,
    blocks: row.blocks,
  };
}

/** Bytes a change adds to the backlog: the content it carries (a delta's blocks), or nothing for metadata-only changes. */
export function changeBytes(change: Change): number {
  if (change.op === "verify") return change.size;
  if (change.op === "task") return change.digest?.list?.size ?? 0;
  if (change.op === "block") return "bytes" in change.content ? change.content.bytes.length : 0;
  if (change.op !== "put") return 0;
  return change.delta ? deltaBytes(change.size, change.delta) : change.size;
}

function prepareStatements(db: DatabaseSync) {
  const prepare = (sql: string): StatementSync => db.prepare(sql);
  return {
    ensureSet: prepare("INSERT OR IGNORE INTO sets (name, next_seq, sent_seq) VALUES (?, 1, 0)"),
    getSet: prepare("SELECT * FROM sets WHERE name = ?"),
    bumpSeq: prepare("UPDATE sets SET next_seq = ?, backlog_records = backlog_records + ?, backlog_bytes = backlog_bytes + ? WHERE name = ?"),
    insertRecord: prepare("INSERT INTO journal (set_name, seq, change, content, bytes) VALUES (?, ?, ?, ?, ?)"),
    pending: prepare("SELECT seq, change, content FROM journal WHERE set_name = ? AND seq > ? ORDER BY seq LIMIT ?"),
    sentBacklog: prepare("SELECT count(*) AS records, coalesce(sum(bytes), 0) AS bytes FROM journal WHERE set_name = ? AND seq <= ?"),
    // The spool files of sent records; the LIKE skips parsing records that have none (nearly all).
    sentSpools: prepare(
      `SELECT json_extract(change, '$.content.spool') AS spool FROM journal
       WHERE set_name = ? AND seq <= ? AND change LIKE '%"spool":%' AND json_extract(change, '$.content.spool') IS NOT NULL`,
    ),
    deleteSent: prepare("DELETE FROM journal WHERE set_name = ? AND seq <= ?"),
    markSent: prepare(
      `UPDATE sets SET sent_seq = ?, messages_sent = messages_sent + 1, bytes_sent = bytes_sent + ?, last_send_error = NULL,
       backlog_records = backlog_records - ?, backlog_bytes = backlog_bytes - ? WHERE name = ?`,
    ),
    sendError: prepare("UPDATE sets SET last_send_error = ? WHERE name = ?"),
    setOverflow: prepare("UPDATE sets SET overflowed = ? WHERE name = ?"),
    setWatcherProblem: prepare("UPDATE sets SET watcher_problem = ? WHERE name = ?"),
    getEntry: prepare("SELECT * FROM entries WHERE set_name = ? AND path = ?"),
    // Without statistics the planner scans the whole set by primary key instead: a folder's entries cost the set's size.
    children: prepare("SELECT * FROM entries INDEXED BY entries_by_parent WHERE set_name = ? AND parent = ? ORDER BY path"),
    childrenStat: prepare(
      "SELECT path, kind, size, mode, mtime_ns FROM entries INDEXED BY entries_stat_by_parent WHERE set_name = ? AND parent = ?",
    ),
    under: prepare("SELECT * FROM entries WHERE set_name = ? AND path > ? AND path < ? ORDER BY path DESC"),
    upsertEntry: prepare(
      `INSERT INTO entries (set_name, path, parent, kind, size, mode, mtime_ns, sha256, link, blocks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (set_name, path) DO UPDATE SET kind = excluded.kind, size = excluded.size, mode = excluded.mode,
       mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, link = excluded.link, blocks = excluded.blocks`,
    ),
    moveEntry: prepare("UPDATE entries SET path = ?, parent = ? WHERE set_name = ? AND path = ?"),
    deleteEntry: prepare("DELETE FROM entries WHERE set_name = ? AND path = ?"),
    clearEntries: prepare("DELETE FROM entries WHERE set_name = ?"),
    countEntries: prepare("SELECT count(*) AS n FROM entries WHERE set_name = ?"),
    upsertBlock: prepare("INSERT INTO volume_blocks (set_name, idx, sha256) VALUES (?, ?, ?) ON CONFLICT (set_name, idx) DO UPDATE SET sha256 = excluded.sha256"),
    blockRange: prepare("SELECT idx, sha256 FROM volume_blocks WHERE set_name = ? AND idx >= ? AND idx < ?"),
    dropBlocksFrom: prepare("DELETE FROM volume_blocks WHERE set_name = ? AND idx >= ?"),
    clearBlocks: prepare("DELETE FROM volume_blocks WHERE set_name = ?"),
    getVolume: prepare("SELECT size, stamp FROM volumes WHERE set_name = ?"),
    upsertVolumeSize: prepare("INSERT INTO volumes (set_name, size) VALUES (?, ?) ON CONFLICT (set_name) DO UPDATE SET size = excluded.size"),
    setVolumeStamp: prepare("UPDATE volumes SET stamp = ? WHERE set_name = ?"),
    clearVolume: prepare("DELETE FROM volumes WHERE set_name = ?"),
    getGeneration: prepare("SELECT id, since_seq AS sinceSeq FROM generations WHERE set_name = ?"),
    setGeneration: prepare("INSERT OR REPLACE INTO generations (set_name, id, since_seq) VALUES (?, ?, ?)"),
    getRecord: prepare("SELECT seq, change, bytes FROM journal WHERE set_name = ? AND seq = ?"),
    // Rare (a refused record, a sent skip): the json_extract over the set's unsent records is affordable then.
    touching: prepare(
      `SELECT seq, change, bytes FROM journal WHERE set_name = :set AND seq > :after AND seq <= :upto AND json_extract(change, '$.op') != 'skip'
       AND (json_extract(change, '$.path') = :path OR json_extract(change, '$.from') = :path OR json_extract(change, '$.to') = :path) ORDER BY seq`,
    ),
    replaceRecord: prepare("UPDATE journal SET change = ?, content = NULL, bytes = ? WHERE set_name = ? AND seq = ?"),
    addBacklogBytes: prepare("UPDATE sets SET backlog_bytes = backlog_bytes + ? WHERE name = ?"),
    skippedOf: prepare("SELECT path, seq, reason, since FROM skipped WHERE set_name = ? ORDER BY path"),
    lastResyncIn: prepare(
      `SELECT max(seq) AS seq FROM journal WHERE set_name = :set AND seq > :after AND seq <= :upto AND json_extract(change, '$.op') = 'resync'`,
    ),
    upsertSkipped: prepare(
      `INSERT INTO skipped (set_name, path, seq, reason, since) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (set_name, path) DO UPDATE SET seq = excluded.seq, reason = excluded.reason`,
    ),
    deleteSkipped: prepare("DELETE FROM skipped WHERE set_name = ? AND path = ?"),
    invalidateEntry: prepare("UPDATE entries SET mtime_ns = '-1', sha256 = NULL, blocks = NULL WHERE set_name = ? AND path = ?"),
    probe: prepare("UPDATE sets SET next_seq = next_seq"),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

/** A set's journal generation: its id, and the seq it began at (0: with the journal). */
export interface JournalGeneration {
  id: string;
  sinceSeq: number;
}

function newGenerationId(): string {
  return randomBytes(8).toString("hex");
}

/** A path whose latest change the target refused: the target keeps its last good version until a later change is delivered. */
export interface SkippedPath {
  path: string;
  /** Seq of the refused record (a skip record in its place). */
  seq: number;
  reason: string;
  /** When the path was first skipped (ISO 8601). */
  since: string;
}

/** A journaled record as stored, without its inline content. */
export interface StoredRecord {
  seq: number;
  change: Change;
  bytes: number;
}

export interface JournalOptions {
  /** Called inside every write transaction before it commits: a test's fault injection throws from it (e.g. SQLITE_FULL). */
  readonly onWrite?: () => void;
  /** The clock records are stamped with (ms since the epoch). @default Date.now */
  readonly now?: () => number;
}

export class Journal {
  readonly spoolDir: string;
  /** The database file: named in every error about it. */
  readonly path: string;
  /** Entries of the sets that cannot be replicated under their names, for `status`. */
  readonly skippedNames: SkippedNames;
  readonly #chunks: ChunkIndex;
  readonly #db: DatabaseSync;
  readonly #statements: Statements;
  readonly #onWrite: (() => void) | undefined;
  /** Stamps each journaled record (`restore --at` goes by it); a test's clock in tests. */
  readonly #now: () => number;

  private constructor(db: DatabaseSync, path: string, spoolDir: string, options: JournalOptions) {
    this.#db = db;
    this.path = path;
    this.spoolDir = spoolDir;
    this.skippedNames = new SkippedNames(db);
    this.#chunks = new ChunkIndex(db);
    this.#statements = prepareStatements(db);
    this.#onWrite = options.onWrite;
    this.#now = options.now ?? Date.now;
  }

  /** Opens (creating if needed) the journal in stateDir; a damaged one throws JournalCorruptError, a full disk JournalDiskFullError. */
  static open(stateDir: string, options: JournalOptions = {}): Journal {
    mkdirSync(stateDir, { recursive: true });
    const spoolDir = join(stateDir, "spool");
    mkdirSync(spoolDir, { recursive: true });
    const path = join(stateDir, "journal.db");
    try {
      return Journal.#setUp(new DatabaseSync(path), path, spoolDir, options);
    } catch (error) {
      throw journalFault(error, path);
    }
  }

  static #setUp(db: DatabaseSync, path: string, spoolDir: string, options: JournalOptions): Journal {
    db.exec("PRAGMA journal_mode = WAL");
    // FULL: the WAL is fsynced at every commit, so a journaled change survives a power cut.
    db.exec("PRAGMA synchronous = FULL");
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec(SCHEMA);
    // Journals made before block hashes were indexed gain the column; their entries get hashes on the next put.
    const columns = db.prepare("PRAGMA table_info(entries)").all() as { name: string }[];
    if (!columns.some((c) => c.name === "blocks")) db.exec("ALTER TABLE entries ADD COLUMN blocks BLOB");
    const setColumns = db.prepare("PRAGMA table_info(sets)").all() as { name: string }[];
    if (!setColumns.some((c) => c.name === "overflowed")) db.exec("ALTER TABLE sets ADD COLUMN overflowed INTEGER NOT NULL DEFAULT 0");
    if (!setColumns.some((c) => c.name === "watcher_problem")) db.exec("ALTER TABLE sets ADD COLUMN watcher_problem TEXT");
    if (!setColumns.some((c) => c.name === "backlog_bytes")) {
      // Kept up to date by append and markSent from now on, so reading the backlog never sums the journal.
      db.exec("ALTER TABLE sets ADD COLUMN backlog_records INTEGER NOT NULL DEFAULT 0");
      db.exec("ALTER TABLE sets ADD COLUMN backlog_bytes INTEGER NOT NULL DEFAULT 0");
      db.exec(`UPDATE sets SET
        backlog_records = (SELECT count(*) FROM journal WHERE set_name = sets.name),
        backlog_bytes = (SELECT coalesce(sum(bytes), 0) FROM journal WHERE set_name = sets.name)`);
    }
    // Reads the sets table's pages: a journal damaged there fails here, at start, not later.
    db.prepare("SELECT count(*) AS n, coalesce(sum(backlog_bytes), 0) AS bytes FROM sets").get();
    return new Journal(db, path, spoolDir, options);
  }

  close(): void {
    this.#db.close();
  }

  #run<T>(work: () => T): T {
    try {
      this.#db.exec("BEGIN IMMEDIATE");
      try {
        const result = work();
        this.#onWrite?.();
        this.#db.exec("COMMIT");
        return result;
      } catch (error) {
        // SQLite rolls back by itself on some errors (a full disk): a second ROLLBACK would hide the real error.
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw error;
      }
    } catch (error) {
      throw journalFault(error, this.path);
    }
  }

  /** Runs work in one write transaction: all of it is journaled, or none. */
  atomically<T>(work: () => T): T {
    return this.#run(work);
  }

  /** Throws (JournalDiskFullError, ...) unless a write transaction commits: whether journaling can resume. */
  checkWritable(): void {
    this.#run(() => this.#statements.probe.run());
  }

  /**
   * Journals changes of a set in order, in one transaction, and updates the
   * index to match. Returns the seqs given to them.
   */
  append(set: string, changes: readonly Change[]): number[] {
    if (changes.length === 0) return [];
    return this.#run(() => {
      const s = this.#statements;
      s.ensureSet.run(set);
      const row = s.getSet.get(set) as { next_seq: number };
      let seq = row.next_seq;
      let bytes = 0;
      const seqs: number[] = [];
      const at = this.#now();
      for (const change of changes) {
        const { content, stored } = this.#storedForm(change);
        s.insertRecord.run(set, seq, JSON.stringify({ ...stored, at }), content, changeBytes(change));
        bytes += changeBytes(change);
        this.#index(set, change);
        seqs.push(seq);
        seq += 1;
      }
      // A volume's size once per append, not per block: the blocks of one scan all carry the same.
      const sized = changes.findLast((change) => change.op === "block");
      if (sized) {
        s.upsertVolumeSize.run(set, sized.volumeSize);
        s.dropBlocksFrom.run(set, blockCount(sized.volumeSize));
      }
      s.bumpSeq.run(seq, seqs.length, bytes, set);
      return seqs;
    });
  }

  #storedForm(change: Change): { stored: Change; content: Uint8Array | null } {
    if (change.op === "block") {
      if (!("bytes" in change.content)) return { stored: change, content: null };
      return { stored: { ...change, content: { bytes: new Uint8Array() } }, content: change.content.bytes };
    }
    if (change.op === "verify" || (change.op === "task" && change.content)) {
      if (!change.content || !("bytes" in change.content)) return { stored: change, content: null };
      return { stored: { ...change, content: { bytes: new Uint8Array() } }, content: change.content.bytes };
    }
    if (change.op !== "put") return { stored: change, content: null };
    // Block hashes belong to the index, not to the record that travels.
    const { blockHashes: _index, chunkHashes: _chunks, ...put } = change;
    if (!("bytes" in put.content)) return { stored: put, content: null };
    return { stored: { ...put, content: { bytes: new Uint8Array() } }, content: put.content.bytes };
  }

  #index(set: string, change: Change): void {
    const s = this.#statements;
    const upsert = (
      path: string,
      kind: EntryKind,
      size: number,
      mode: number,
      mtimeNs: string,
      sha: string | null,
      link: string | null,
      blocks: Uint8Array | null = null,
    ) => s.upsertEntry.run(set, path, parentOf(path) ?? "", kind, size, mode, mtimeNs, sha, link, blocks);
    switch (change.op) {
      case "put":
        upsert(change.path, "file", change.size, change.mode, change.mtimeNs, change.sha256, null, change.blockHashes ?? null);
        this.#chunks.set(set, change.path, change.sha256, change.chunkHashes);
        break;
      case "rename":
        s.deleteEntry.run(set, change.to);
        s.moveEntry.run(change.to, parentOf(change.to) ?? "", set, change.from);
        this.#chunks.move(set, change.from, change.to);
        break;
      case "mkdir":
        upsert(change.path, "dir", 0, change.mode, change.mtimeNs, null, null);
        break;
      case "symlink":
        upsert(change.path, "symlink", 0, 0o777, change.mtimeNs, null, change.target);
        break;
      case "delete":
        s.deleteEntry.run(set, change.path);
        this.#chunks.remove(set, change.path);
        break;
      case "block":
        s.upsertBlock.run(set, change.index, change.sha256);
        break;
      case "resync":
      case "verify":
      case "task":
      case "prune":
      case "skip":
      case "drill":
        break;
    }
  }

  /** Unsent records of a set after afterSeq, oldest first. */
  pending(set: string, afterSeq: number, limit: number): JournalRecord[] {
    const rows = this.#statements.pending.all(set, afterSeq, limit) as unknown as RecordRow[];
    return rows.map((row) => {
      const change = JSON.parse(row.change) as Change & { at?: number };
      if ((change.op === "put" || change.op === "verify" || change.op === "block" || change.op === "task") && change.content && "bytes" in change.content) {
        change.content = { bytes: row.content ?? new Uint8Array() };
      }
      return { ...change, seq: row.seq };
    });
  }

  /** The queue accepted every record up to lastSeq: they leave the journal (with their spool files). */
  markSent(set: string, lastSeq: number, messageBytes: number): void {
    const spools: string[] = [];
    this.#run(() => {
      const s = this.#statements;
      this.#resolveSkipped(set, lastSeq);
      for (const row of s.sentSpools.all(set, lastSeq) as unknown as { spool: string }[]) spools.push(row.spool);
      const leaving = s.sentBacklog.get(set, lastSeq) as { records: number; bytes: number };
      s.deleteSent.run(set, lastSeq);
      s.markSent.run(lastSeq, messageBytes, leaving.records, leaving.bytes, set);
    });
    for (const spool of spools) rmSync(join(this.spoolDir, spool), { force: true });
  }

  /**
   * A skipped path is replicated again once a later change of it (a put, a delete, a move) is sent, and
   * anything skipped before a resync once the resync is sent: the mirror behind it sends it again (and a
   * refusal of that is recorded anew).
   */
  #resolveSkipped(set: string, lastSeq: number): void {
    const s = this.#statements;
    const rows = s.skippedOf.all(set) as unknown as SkippedPath[];
    if (rows.length === 0) return;
    const after = Math.min(...rows.map((row) => row.seq));
    const resync = (s.lastResyncIn.get({ set, after, upto: lastSeq }) as { seq: number | null }).seq;
    for (const skipped of rows) {
      if (skipped.seq >= lastSeq) continue;
      const later = (resync !== null && resync > skipped.seq) || s.touching.get({ set, after: skipped.seq, upto: lastSeq, path: skipped.path });
      if (later) s.deleteSkipped.run(set, skipped.path);
    }
  }

  /** A journaled record as stored (inline content left out), or undefined once sent. */
  record(set: string, seq: number): StoredRecord | undefined {
    const row = this.#statements.getRecord.get(set, seq) as { seq: number; change: string; bytes: number } | undefined;
    return row && { seq: row.seq, change: JSON.parse(row.change) as Change, bytes: row.bytes };
  }

  /** Unsent records after afterSeq that change path (as path, rename source or target), oldest first; skips left out. */
  recordsTouching(set: string, path: string, afterSeq: number): StoredRecord[] {
    const rows = this.#statements.touching.all({ set, after: afterSeq, upto: Number.MAX_SAFE_INTEGER, path }) as unknown as { seq: number; change: string; bytes: number }[];
    return rows.map((row) => ({ seq: row.seq, change: JSON.parse(row.change) as Change, bytes: row.bytes }));
  }

  /** Puts change in place of the unsent record at seq (its inline content dropped), keeping the backlog's byte count right. */
  replaceRecord(set: string, seq: number, change: Change): void {
    const s = this.#statements;
    const old = s.getRecord.get(set, seq) as { bytes: number } | undefined;
    if (!old) throw new Error(`journal holds no unsent record ${seq} of set "${set}"`);
    const bytes = changeBytes(change);
    s.replaceRecord.run(JSON.stringify(this.#storedForm(change).stored), bytes, set, seq);
    s.addBacklogBytes.run(bytes - old.bytes, set);
  }

  /** Records a path as not replicated (keeping when it was first skipped). */
  markSkipped(set: string, path: string, seq: number, reason: string): void {
    this.#statements.upsertSkipped.run(set, path, seq, reason, new Date().toISOString());
  }

  /** Paths of a set that are not replicated because the target refused their latest change. */
  skipped(set: string): SkippedPath[] {
    return this.#statements.skippedOf.all(set) as unknown as SkippedPath[];
  }

  /** Makes the index disagree with any stat of path: the next scan or capture journals it again, in full. */
  invalidate(set: string, path: string): void {
    this.#statements.invalidateEntry.run(set, path);
  }

  recordSendError(set: string, error: string | null): void {
    this.#statements.ensureSet.run(set);
    this.#statements.sendError.run(error, set);
  }

  counters(set: string): SetCounters {
    const s = this.#statements;
    const row = s.getSet.get(set) as
      | {
          next_seq: number;
          sent_seq: number;
          messages_sent: number;
          bytes_sent: number;
          last_send_error: string | null;
          overflowed: number;
          watcher_problem: string | null;
          backlog_records: number;
          backlog_bytes: number;
        }
      | undefined;
    return {
      nextSeq: row?.next_seq ?? 1,
      sentSeq: row?.sent_seq ?? 0,
      backlogRecords: row?.backlog_records ?? 0,
      backlogBytes: row?.backlog_bytes ?? 0,
      messagesSent: row?.messages_sent ?? 0,
      bytesSent: row?.bytes_sent ?? 0,
      lastSendError: row?.last_send_error ?? null,
      overflowed: row?.overflowed === 1,
      watcherProblem: row?.watcher_problem ?? null,
    };
  }

  /** Records why a set's watcher stopped working (null once it works), for `tidemark status`. */
  setWatcherProblem(set: string, problem: string | null): void {
    this.#statements.ensureSet.run(set);
    this.#statements.setWatcherProblem.run(problem, set);
  }

  /** Marks (or clears) a set whose backlog reached the journal limit; kept across restarts. */
  setOverflowed(set: string, overflowed: boolean): void {
    this.#statements.ensureSet.run(set);
    this.#statements.setOverflow.run(overflowed ? 1 : 0, set);
  }

  entry(set: string, path: string): IndexEntry | undefined {
    const row = this.#statements.getEntry.get(set, path) as EntryRow | undefined;
    return row && toEntry(row);
  }

  /** Index entries directly inside dir ("" for the set root). */
  children(set: string, dir: string): IndexEntry[] {
    return (this.#statements.children.all(set, dir) as unknown as EntryRow[]).map(toEntry);
  }

  /** What a scan compares the entries directly inside dir by (kind, size, mode, mtime), by path. */
  childrenStat(set: string, dir: string): Map<string, IndexStat> {
    const rows = this.#statements.childrenStat.all(set, dir) as unknown as { path: string; kind: string; size: number; mode: number; mtime_ns: string }[];
    return new Map(rows.map((row) => [row.path, { kind: entryKind(row.kind), size: row.size, mode: row.mode, mtimeNs: row.mtime_ns }]));
  }

  /** Index entries strictly below dir, children before their parents (the order to delete them in). */
  descendants(set: string, dir: string): IndexEntry[] {
    // '/' is 0x2F and '0' is 0x30: [dir/, dir0) holds exactly the paths below dir.
    return (this.#statements.under.all(set, `${dir}/`, `${dir}0`) as unknown as EntryRow[]).map(toEntry);
  }

  /** Every index entry of a set, in path order, read lazily (sets may hold millions). */
  *allEntries(set: string): Generator<IndexEntry> {
    // A statement of its own: two manifests may be read at once.
    const statement = this.#db.prepare("SELECT * FROM entries WHERE set_name = ? ORDER BY path");
    for (const row of statement.iterate(set)) yield toEntry(row as unknown as EntryRow);
  }

  entryCount(set: string): number {
    return (this.#statements.countEntries.get(set) as { n: number }).n;
  }

  /** The chunk fingerprints indexed for path's content with this sha256, if any (chunk-index.ts). */
  chunkFingerprints(set: string, path: string, sha256: string): Uint8Array | undefined {
    return this.#chunks.get(set, path, sha256);
  }

  /** Forgets one entry of the index: the next capture journals it in full. */
  forget(set: string, path: string): void {
    this.#statements.deleteEntry.run(set, path);
  }

  /** Forgets the index of a set (before a full resync): every entry (or block) will be journaled again. */
  clearIndex(set: string): void {
    this.#statements.clearEntries.run(set);
    this.#chunks.clear(set);
    this.#statements.clearBlocks.run(set);
    this.#statements.clearVolume.run(set);
  }

  /** The sha256 of the blocks of a volume set in [from, to) as journaled, by index. */
  volumeBlocks(set: string, from: number, to: number): Map<number, string> {
    const rows = this.#statements.blockRange.all(set, from, to) as unknown as { idx: number; sha256: string }[];
    return new Map(rows.map((row) => [row.idx, row.sha256]));
  }

  /** A volume set's size as last journaled, and the stamp of the file at the last complete scan (null: read it all next time). */
  volume(set: string): { size: number; stamp: string | null } | undefined {
    return this.#statements.getVolume.get(set) as { size: number; stamp: string | null } | undefined;
  }

  /** The set's journal generation, made on first use: a journal made anew (lost, deleted) has a generation no target knows. */
  generation(set: string): JournalGeneration {
    // Read first: every message packed asks, and a write would take the database's lock each time.
    const known = this.knownGeneration(set);
    if (known) return known;
    const made = { id: newGenerationId(), sinceSeq: 0 };
    this.#statements.setGeneration.run(set, made.id, made.sinceSeq);
    return made;
  }

  /** The set's journal generation when it has one, without making it (for readers such as `tidemark status`). */
  knownGeneration(set: string): JournalGeneration | undefined {
    return this.#statements.getGeneration.get(set) as unknown as JournalGeneration | undefined;
  }

  /** Begins a new generation of the set at its next seq: what the agent sends from now on restarts the target's chain. */
  beginGeneration(set: string): JournalGeneration {
    const generation = { id: newGenerationId(), sinceSeq: this.counters(set).nextSeq };
    this.#statements.setGeneration.run(set, generation.id, generation.sinceSeq);
    return generation;
  }

  /** Records the volume file's stamp after a scan read all of it (null forgets it). */
  setVolumeStamp(set: string, stamp: string | null): void {
    this.#statements.setVolumeStamp.run(stamp, set);
  }
}
