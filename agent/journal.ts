// The agent's durable journal (DESIGN 2): every change gets the next seq of
// its set and is on disk (SQLite WAL, fsync on commit) before anything is
// sent; a record leaves only after the queue accepted the message holding it.
// This file is the outbox and the database's transactions; the same database
// holds the index of entries as journaled (journal-index.ts), the volumes'
// blocks (journal-volumes.ts) and each set's counters, flags and generation
// (journal-sets.ts), each written in the append's transaction.

import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { OrphanPolicy } from "../contract/layout.ts";
import { deltaBytes } from "../contract/wire.ts";
import type { ByteRange } from "../contract/delta-ranges.ts";
import { TaskIdSchema, type ChangingWhileRead, type NotReplicatedAtMarker, type TaskFields } from "../contract/tasks.ts";
import { JournalCorruptError, journalFault, lostWriteAheadLog, openFault } from "./journal-faults.ts";
import { SkippedNames } from "./skipped-names.ts";
import { EntryIndex, INVALIDATED_MTIME_NS } from "./journal-index.ts";
import { HeldFiles } from "./held-files.ts";
import { StagedUploads } from "./staged-uploads.ts";
import { PendingRecoveries } from "./pending-recoveries.ts";
import { SetStates } from "./journal-sets.ts";
import { VolumeStamps } from "./journal-volumes.ts";
import { CONTENT_FILE_MIN_BYTES, ContentFiles, formatRef, parseRef, type ContentRef } from "./journal-content.ts";
import { RootHeldError, SetRoots, type RootLook, type StatRoot } from "./set-roots.ts";

export type { FileStamp, IndexEntry, IndexStat } from "./journal-index.ts";
import type { FileStamp } from "./journal-index.ts";
export type { JournalGeneration, SetCounters } from "./journal-sets.ts";
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
      /** The file's ctime and inode before it was read: kept in the index (a rewrite behind an unchanged mtime), never sent. */
      stamp?: FileStamp;
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
      /** Files that kept changing while the barrier read them; travels on the marker. */
      changingWhileRead?: ChangingWhileRead;
      /** Entries the set holds and does not replicate at the barrier; travels on the marker. */
      notReplicated?: NotReplicatedAtMarker;
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

interface RecordRow {
  seq: number;
  change: string;
  content: Uint8Array | null;
  /** Where the content is when not in the row (journal-content.ts). */
  content_at: string | null;
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
  ctime_ns TEXT,
  ino TEXT,
  link_group TEXT,
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
`;

/** Covers what a scan compares a folder's entries by: the scan reads no table rows. Made once the entries have every column. */
const SCAN_INDEX = `
CREATE INDEX IF NOT EXISTS entries_scan_by_parent ON entries (set_name, parent, path, kind, size, mode, mtime_ns, ctime_ns, ino);
-- Its predecessor, without ctime and inode.
DROP INDEX IF EXISTS entries_stat_by_parent;
-- The names of each hard-linked file (journal-index.ts otherNames): only files with more than one link are in it.
CREATE INDEX IF NOT EXISTS entries_by_link_group ON entries (set_name, link_group) WHERE link_group IS NOT NULL;
`;

/**
 * Records that alter the target's copy of a set from its tree, or claim a point of it (a marker, a verification's
 * manifest, a resync's mirror): refused while the set's root is held (set-roots.ts). Prunes and drill reports are not.
 */
const FROM_THE_TREE: ReadonlySet<Change["op"]> = new Set(["put", "mkdir", "symlink", "delete", "rename", "verify", "resync", "task"]);

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
    insertRecord: prepare("INSERT INTO journal (set_name, seq, change, content, bytes, content_at) VALUES (?, ?, ?, ?, ?, ?)"),
    pending: prepare("SELECT seq, change, content, content_at FROM journal WHERE set_name = ? AND seq > ? ORDER BY seq LIMIT ?"),
    sentBacklog: prepare("SELECT count(*) AS records, coalesce(sum(bytes), 0) AS bytes FROM journal WHERE set_name = ? AND seq <= ?"),
    // The spool files of sent records; the LIKE skips parsing records that have none (nearly all).
    sentSpools: prepare(
      `SELECT json_extract(change, '$.content.spool') AS spool FROM journal
       WHERE set_name = ? AND seq <= ? AND change LIKE '%"spool":%' AND json_extract(change, '$.content.spool') IS NOT NULL`,
    ),
    deleteSent: prepare("DELETE FROM journal WHERE set_name = ? AND seq <= ?"),
    unsentSpools: prepare(
      `SELECT seq, json_extract(change, '$.content.spool') AS spool, NULL AS content_at FROM journal
       WHERE set_name = :set AND change LIKE '%"spool":%' AND json_extract(change, '$.content.spool') IS NOT NULL
       UNION ALL SELECT seq, substr(content_at, 1, instr(content_at, ':') - 1) AS spool, content_at FROM journal WHERE set_name = :set AND content_at IS NOT NULL ORDER BY seq`,
    ),
    getRecord: prepare("SELECT seq, change, bytes FROM journal WHERE set_name = ? AND seq = ?"),
    // Rare (a refused record, a sent skip): the json_extract over the set's unsent records is affordable then.
    touching: prepare(
      `SELECT seq, change, bytes FROM journal WHERE set_name = :set AND seq > :after AND seq <= :upto AND json_extract(change, '$.op') != 'skip'
       AND (json_extract(change, '$.path') = :path OR json_extract(change, '$.from') = :path OR json_extract(change, '$.to') = :path) ORDER BY seq`,
    ),
    // Once per set at start (busy-files.ts): the json_extract over its unsent records is affordable then.
    largePuts: prepare(
      `SELECT seq, change, bytes FROM journal WHERE set_name = :set AND seq > :after AND json_extract(change, '$.op') = 'put' AND json_extract(change, '$.size') >= :size ORDER BY seq`,
    ),
    replaceRecord: prepare("UPDATE journal SET change = ?, content = NULL, content_at = NULL, bytes = ? WHERE set_name = ? AND seq = ?"),
    skippedOf: prepare("SELECT path, seq, reason, since FROM skipped WHERE set_name = ? ORDER BY path"),
    laterTask: prepare(`SELECT 1 AS found FROM journal WHERE set_name = :set AND seq > :after AND seq <= :upto AND json_extract(change, '$.op') = 'task' LIMIT 1`),
    lastResyncIn: prepare(
      `SELECT max(seq) AS seq FROM journal WHERE set_name = :set AND seq > :after AND seq <= :upto AND json_extract(change, '$.op') = 'resync'`,
    ),
    upsertSkipped: prepare(
      `INSERT INTO skipped (set_name, path, seq, reason, since) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (set_name, path) DO UPDATE SET seq = excluded.seq, reason = excluded.reason`,
    ),
    deleteSkipped: prepare("DELETE FROM skipped WHERE set_name = ? AND path = ?"),
  };
}

type Statements = ReturnType<typeof prepareStatements>;

/** How a refused task marker is named among skipped paths (poison.ts). */
function isTaskName(path: string): boolean {
  return path.startsWith("task ") && TaskIdSchema.safeParse(path.slice("task ".length)).success;
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
  /**
   * A process that only reads the journal (`status`): it leaves the leftover content files to the agent, as removing
   * them takes the write lock, which another process may hold (status then waited for it and failed).
   */
  readonly reader?: boolean;
  /**
   * Checks every page of the database when it opens (PRAGMA quick_check; about a second a million indexed entries),
   * so damage is found before anything is sent from it rather than by a later read: the agent's start does.
   */
  readonly check?: boolean;
  /** Stats a set's root for its identity (set-roots.ts); a test's stand-in makes a folder made again on the same inode. */
  readonly statRoot?: StatRoot;
  /** How the agent looks at a set's root (set-roots.ts RootLook); a test's stand-in makes a root that never answers. */
  readonly lookRoot?: Partial<RootLook>;
}

export class Journal {
  readonly spoolDir: string;
  /** The database file: named in every error about it. */
  readonly path: string;
  /** Entries of the sets that cannot be replicated under their names, for `status`. */
  readonly skippedNames: SkippedNames;
  /** Every entry of a set as last journaled. */
  readonly index: EntryIndex;
  /** Volume sets' blocks, size and file stamp. */
  readonly volumes: VolumeStamps;
  /** Each set's counters, flags and journal generation. */
  readonly sets: SetStates;
  /** Files the running agent holds back (busy-files.ts), for `status`. */
  readonly held: HeldFiles;
  /** Large payloads the agent is staging, for status. */
  readonly uploads: StagedUploads;
  /** Recoveries begun and not finished (pending-recoveries.ts): the next start runs them again. */
  readonly recoveries: PendingRecoveries;
  /** Each tree set's root as last known good, and the holds on sets whose root went missing, changed or empty. */
  readonly roots: SetRoots;
  readonly #db: DatabaseSync;
  /** Small contents of large batches, kept in files (journal-content.ts). */
  readonly #content: ContentFiles;
  readonly #statements: Statements;
  readonly #onWrite: (() => void) | undefined;
  /** Stamps each journaled record (`restore --at` goes by it); a test's clock in tests. */
  readonly #now: () => number;

  private constructor(db: DatabaseSync, path: string, spoolDir: string, options: JournalOptions) {
    this.#db = db;
    this.path = path;
    this.spoolDir = spoolDir;
    this.skippedNames = new SkippedNames(db);
    this.index = new EntryIndex(db, () => this.writeStamps());
    this.volumes = new VolumeStamps(db);
    this.sets = new SetStates(db, options.now);
    this.held = new HeldFiles(db);
    this.uploads = new StagedUploads(db);
    this.recoveries = new PendingRecoveries(db);
    this.roots = new SetRoots(db, options.statRoot, options.lookRoot);
    this.#content = new ContentFiles(db, spoolDir, options.reader !== true);
    this.#statements = prepareStatements(db);
    this.#onWrite = options.onWrite;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Opens (creating if needed) the journal in stateDir; a damaged one (or one whose write-ahead log is lost) throws
   * JournalCorruptError, one this user may not open JournalUnreadableError, a full disk JournalDiskFullError.
   */
  static open(stateDir: string, options: JournalOptions = {}): Journal {
    mkdirSync(stateDir, { recursive: true });
    const spoolDir = join(stateDir, "spool");
    mkdirSync(spoolDir, { recursive: true });
    const path = join(stateDir, "journal.db");
    // Before SQLite opens it: its recovery would drop the lost commits' traces and go on from the older database.
    const lost = lostWriteAheadLog(path);
    if (lost !== undefined) throw new JournalCorruptError(path, new Error(lost));
    let db: DatabaseSync | undefined;
    try {
      db = new DatabaseSync(path);
      const journal = Journal.#setUp(db, path, spoolDir, options);
      if (options.check === true) Journal.#check(db, path);
      return journal;
    } catch (error) {
      if (db?.isOpen === true) db.close();
      throw openFault(error, path);
    }
  }

  /** Throws SQLite's first findings unless every page of the database reads as sound. */
  static #check(db: DatabaseSync, path: string): void {
    const rows = db.prepare("PRAGMA quick_check(5)").all() as { quick_check: string }[];
    const found = rows.map((row) => row.quick_check);
    if (found.length === 1 && found[0] === "ok") return;
    throw new JournalCorruptError(path, new Error(`quick_check found: ${found.join("; ")}`));
  }

  static #setUp(db: DatabaseSync, path: string, spoolDir: string, options: JournalOptions): Journal {
    // First: every statement after it, setting WAL mode too, waits out a lock another process holds briefly
    // (status's open failed at once with "locked by another process" when it came second).
    db.exec("PRAGMA busy_timeout = 5000");
    db.exec("PRAGMA journal_mode = WAL");
    // FULL: the WAL is fsynced at every commit, so a journaled change survives a power cut.
    db.exec("PRAGMA synchronous = FULL");
    db.exec(SCHEMA);
    // Journals made before block hashes were indexed gain the column; their entries get hashes on the next put.
    const columns = db.prepare("PRAGMA table_info(entries)").all() as { name: string }[];
    if (!columns.some((c) => c.name === "blocks")) db.exec("ALTER TABLE entries ADD COLUMN blocks BLOB");
    // Journals made before ctimes and inodes were indexed gain them as NULL, "unknown": the next lstat of each file
    // records them without reading it (journal-index.ts stamp), so an upgrade does not hash the whole tree again.
    // Rewrites made before the upgrade behind an unchanged size and mtime are not found that way (verify --deep is).
    if (!columns.some((c) => c.name === "ctime_ns")) db.exec("ALTER TABLE entries ADD COLUMN ctime_ns TEXT");
    if (!columns.some((c) => c.name === "ino")) db.exec("ALTER TABLE entries ADD COLUMN ino TEXT");
    // Journals made before hard-link groups were indexed learn each file's at its next put or read (journal-index.ts).
    if (!columns.some((c) => c.name === "link_group")) db.exec("ALTER TABLE entries ADD COLUMN link_group TEXT");
    db.exec(SCAN_INDEX);
    const setColumns = db.prepare("PRAGMA table_info(sets)").all() as { name: string }[];
    if (!setColumns.some((c) => c.name === "overflowed")) db.exec("ALTER TABLE sets ADD COLUMN overflowed INTEGER NOT NULL DEFAULT 0");
    if (!setColumns.some((c) => c.name === "watcher_problem")) db.exec("ALTER TABLE sets ADD COLUMN watcher_problem TEXT");
    // Since when the set's next message waits for the bandwidth budget (transport/bandwidth.ts), while it does.
    if (!setColumns.some((c) => c.name === "bandwidth_wait_since")) db.exec("ALTER TABLE sets ADD COLUMN bandwidth_wait_since TEXT");
    if (!setColumns.some((c) => c.name === "backlog_bytes")) {
      // Kept up to date by append and markSent from now on, so reading the backlog never sums the journal.
      db.exec("ALTER TABLE sets ADD COLUMN backlog_records INTEGER NOT NULL DEFAULT 0");
      db.exec("ALTER TABLE sets ADD COLUMN backlog_bytes INTEGER NOT NULL DEFAULT 0");
      db.exec(`UPDATE sets SET
        backlog_records = (SELECT count(*) FROM journal WHERE set_name = sets.name),
        backlog_bytes = (SELECT coalesce(sum(bytes), 0) FROM journal WHERE set_name = sets.name)`);
    }
    // Once per journal (user_version 0 to 1): an entry invalidated before negative mtimes were carried holds "-1", now a
    // real stat (1 ns before 1970); each such row meant "recapture", so it takes the marker no stat gives.
    if ((db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version < 1) {
      db.exec(`BEGIN; UPDATE entries SET mtime_ns = '${INVALIDATED_MTIME_NS}' WHERE mtime_ns = '-1'; PRAGMA user_version = 1; COMMIT`);
    }
    // Reads the sets table's pages: a journal damaged there fails here, at start, not later.
    db.prepare("SELECT count(*) AS n, coalesce(sum(backlog_bytes), 0) AS bytes FROM sets").get();
    return new Journal(db, path, spoolDir, options);
  }

  close(): void {
    this.writeStamps();
    this.#db.close();
  }

  #run<T>(work: () => T, rolledBack?: () => void): T {
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
        rolledBack?.();
        throw error;
      }
    } catch (error) {
      throw journalFault(error, this.path);
    }
  }

  /** Writes the file stamps the index holds in memory (journal-index.ts stamp), in a transaction of their own. */
  writeStamps(): void {
    if (!this.index.stampsPending) return;
    try {
      this.#run(() => this.index.writeStamps());
    } catch {
      // Dropped, never failing the scan that took them: a stamp not written only costs a read of the file later.
    }
  }

  /** Runs work in one write transaction: all of it is journaled, or none. */
  atomically<T>(work: () => T): T {
    return this.#run(work);
  }

  /** Throws (JournalDiskFullError, ...) unless a write transaction commits: whether journaling can resume. */
  checkWritable(): void {
    this.#run(() => this.sets.probe());
  }

  /**
   * Journals changes of a set in order, in one transaction, and updates the
   * index to match. Returns the seqs given to them.
   */
  append(set: string, changes: readonly Change[]): number[] {
    if (changes.length === 0) return [];
    this.#guardRoot(set, changes);
    let file: string | undefined;
    return this.#run(() => {
      let seq = this.sets.nextSeq(set);
      let bytes = 0;
      const seqs: number[] = [];
      const at = this.#now();
      const forms = changes.map((change) => ({ change, ...this.#storedForm(change) }));
      const refs = this.#contentFile(set, seq, forms);
      file = refs.find((ref) => ref !== undefined)?.file;
      for (const [i, { change, content, stored }] of forms.entries()) {
        const ref = refs[i];
        this.#statements.insertRecord.run(set, seq, JSON.stringify({ ...stored, at }), ref ? null : content, changeBytes(change), ref ? formatRef(ref) : null);
        bytes += changeBytes(change);
        this.index.apply(set, change);
        seqs.push(seq);
        seq += 1;
      }
      this.volumes.apply(set, changes);
      // After the records' own stamps: a stamp taken before one of them does not apply over it (journal-index.ts).
      this.index.writeStamps();
      this.sets.advance(set, seq, seqs.length, bytes);
      return seqs;
    }, () => this.#content.discard(file));
  }

  /**
   * Every path that journals passes here: a set whose root is held (missing, swapped, emptied, not answering)
   * journals nothing that would alter the target; RootHeldError is thrown, so the caller's batch is not journaled.
   * The hold is the one the agent's latest look at the root recorded: no file system call here, as a root on a hung
   * network file system would stop the agent's thread. The agent looks at the root (asynchronously, within a time
   * limit: root-watch.ts) right before each batch of a scan or a capture, so an unmount under them holds the set
   * before its deletes; and it resumes the set when the root is back.
   */
  #guardRoot(set: string, changes: readonly Change[]): void {
    if (!changes.some((change) => FROM_THE_TREE.has(change.op))) return;
    this.assertRootGood(set);
  }

  /** Throws RootHeldError when the set is held (as last recorded). `what` says what the caller would have journaled. */
  assertRootGood(set: string, options: { what?: string } = {}): void {
    const hold = this.roots.held(set);
    if (hold) throw new RootHeldError(hold, options.what);
  }

  /**
   * A batch's small file contents, when they add up to enough, go into one content file (journal-content.ts) instead
   * of their rows; refs[i] says where record i's is (none for records that keep theirs in the row).
   */
  #contentFile(set: string, firstSeq: number, forms: readonly { stored: Change; content: Uint8Array | null }[]): (ContentRef | undefined)[] {
    const filed = (form: { stored: Change; content: Uint8Array | null }) => form.stored.op === "put" && form.content !== null;
    let total = 0;
    let last = 0;
    for (const [i, form] of forms.entries()) {
      if (!filed(form)) continue;
      total += form.content?.length ?? 0;
      last = i;
    }
    if (total < CONTENT_FILE_MIN_BYTES) return [];
    const written = this.#content.write(set, firstSeq + last, forms.filter(filed).map((form) => form.content ?? new Uint8Array()));
    let next = 0;
    return forms.map((form) => (filed(form) ? written[next++] : undefined));
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
    // Block hashes and the stamp belong to the index, not to the record that travels.
    const { blockHashes: _index, chunkHashes: _chunks, stamp: _stamp, ...put } = change;
    if (!("bytes" in put.content)) return { stored: put, content: null };
    return { stored: { ...put, content: { bytes: new Uint8Array() } }, content: put.content.bytes };
  }

  /** Unsent records of a set after afterSeq, oldest first. */
  pending(set: string, afterSeq: number, limit: number): JournalRecord[] {
    const rows = this.#statements.pending.all(set, afterSeq, limit) as unknown as RecordRow[];
    // Contents kept in content files are read a run of records at a time; ContentFileLostError when one is gone, cut or altered.
    const refs = rows.map((row) => (row.content_at === null ? undefined : parseRef(row.content_at)));
    const filed = refs.some((ref) => ref !== undefined) ? this.#content.read(refs, rows.map((row) => row.seq)) : [];
    return rows.map((row, i) => {
      const change = JSON.parse(row.change) as Change & { at?: number };
      const ref = refs[i];
      const bytes = filed[i];
      // A file is outside SQLite's checks: what comes back must be what was journaled (a delta's content by its own
      // sha256), or the target refuses the message.
      if (ref && bytes && change.op === "put") this.#content.check(ref, row.seq, bytes, change.delta?.contentSha256 ?? change.sha256);
      if ((change.op === "put" || change.op === "verify" || change.op === "block" || change.op === "task") && change.content && "bytes" in change.content) {
        change.content = { bytes: filed[i] ?? row.content ?? new Uint8Array() };
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
      spools.push(...this.#content.sent(set, lastSeq));
      const leaving = s.sentBacklog.get(set, lastSeq) as { records: number; bytes: number };
      s.deleteSent.run(set, lastSeq);
      this.sets.sent(set, lastSeq, messageBytes, leaving.records, leaving.bytes);
    });
    for (const spool of spools) rmSync(join(this.spoolDir, spool), { force: true });
  }

  /**
   * A skipped path is replicated again once a later change of it (a put, a delete, a move) is sent, and
   * anything skipped before a resync once the resync is sent: the mirror behind it sends it again (and a
   * refusal of that is recorded anew). A refused task marker (`task <id>`) once a later marker of the set is sent.
   */
  #resolveSkipped(set: string, lastSeq: number): void {
    const s = this.#statements;
    const rows = s.skippedOf.all(set) as unknown as SkippedPath[];
    if (rows.length === 0) return;
    const after = Math.min(...rows.map((row) => row.seq));
    const resync = (s.lastResyncIn.get({ set, after, upto: lastSeq }) as { seq: number | null }).seq;
    for (const skipped of rows) {
      if (skipped.seq >= lastSeq) continue;
      const range = { set, after: skipped.seq, upto: lastSeq };
      const later = (resync !== null && resync > skipped.seq) || (isTaskName(skipped.path) ? s.laterTask.get(range) : s.touching.get({ ...range, path: skipped.path }));
      if (later) s.deleteSkipped.run(set, skipped.path);
    }
  }

  /**
   * The unsent records of a set whose content waits in a spool file, oldest first (spool-folder.ts checks they still
   * do); `lost` for those in a content file, which says whether it can still give theirs back (journal-content.ts).
   */
  unsentSpools(set: string): { seq: number; spool: string; lost?: boolean }[] {
    const rows = this.#statements.unsentSpools.all({ set }) as unknown as { seq: number; spool: string; content_at: string | null }[];
    return rows.map(({ seq, spool, content_at: at }) => (at === null ? { seq, spool } : { seq, spool, lost: this.#content.lost(parseRef(at)) }));
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

  /** Unsent puts after afterSeq of files of at least minSize bytes, oldest first (inline content left out). */
  largePuts(set: string, afterSeq: number, minSize: number): StoredRecord[] {
    const rows = this.#statements.largePuts.all({ set, after: afterSeq, size: minSize }) as unknown as { seq: number; change: string; bytes: number }[];
    return rows.map((row) => ({ seq: row.seq, change: JSON.parse(row.change) as Change, bytes: row.bytes }));
  }

  #revision = 0;
  /** Counts replaceRecord calls: a message packed before a change is no longer what the journal holds (PackedAhead). */
  get revision(): number {
    return this.#revision;
  }

  /** Puts change in place of the unsent record at seq (its inline content dropped), keeping the backlog's byte count right. */
  replaceRecord(set: string, seq: number, change: Change): void {
    this.#revision += 1;
    const s = this.#statements;
    const old = s.getRecord.get(set, seq) as { bytes: number } | undefined;
    if (!old) throw new Error(`journal holds no unsent record ${seq} of set "${set}"`);
    const bytes = changeBytes(change);
    s.replaceRecord.run(JSON.stringify(this.#storedForm(change).stored), bytes, set, seq);
    this.sets.addBacklogBytes(set, bytes - old.bytes);
  }

  /** Records a path as not replicated (keeping when it was first skipped). */
  markSkipped(set: string, path: string, seq: number, reason: string): void {
    this.#statements.upsertSkipped.run(set, path, seq, reason, new Date().toISOString());
  }

  /** Paths of a set that are not replicated because the target refused their latest change. */
  skipped(set: string): SkippedPath[] {
    return this.#statements.skippedOf.all(set) as unknown as SkippedPath[];
  }

  /** Forgets the index of a set (before a full resync): every entry (or block) will be journaled again. */
  clearIndex(set: string): void {
    this.index.clear(set);
    this.volumes.clear(set);
  }
}
