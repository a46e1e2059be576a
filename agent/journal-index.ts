// The journal's index (DESIGN 2): the state of every entry of a set as last
// journaled, which barrier scans and captures compare the source against.
// Written by Journal.append in the same transaction as the records it
// follows; read by scans, captures, manifests and digests.

import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { EntryKind } from "../contract/layout.ts";
import { parentOf } from "../contract/paths.ts";
import { ChunkIndex } from "./chunk-index.ts";
import type { Change } from "./journal.ts";

/**
 * The mtime an invalidated entry holds: no stat gives it (below int64 seconds before 1970, which stat tops out at),
 * yet it is one the wire takes, so a verify manifest carrying it reads as a difference. It was "-1": a file touched
 * to 1 ns before 1970 stats as that, and its invalidated entry would have matched the file.
 */
export const INVALIDATED_MTIME_NS = `-${"9".repeat(28)}`;

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
  /**
   * A file's ctime and inode when its content was last read (never sent): a rewrite that keeps the size and puts the
   * mtime back (cp -p, rsync --inplace, touch -r, tar x) still moves the ctime, which no user can set. null: not known
   * (entries of journals from before: taken unread at the next lstat); "0": a put journaled without one (read once at
   * the next capture); see FileStamp.
   */
  ctimeNs: string | null;
  ino: string | null;
}

/** The part of an index entry a stat can be compared with. */
export type IndexStat = Pick<IndexEntry, "kind" | "size" | "mode" | "mtimeNs" | "ctimeNs" | "ino">;

/** A file's ctime and inode (decimal), as a stat gave them. */
export interface FileStamp {
  readonly ctimeNs: string;
  readonly ino: string;
  /**
   * The file's hard-link group (capture.ts linkGroupOf), null when it has one name; undefined when the stat did not
   * say (a scan's packed stat holds no link count): the indexed group stays.
   */
  readonly linkGroup?: string | null;
}

/** The stamp of a put journaled without one: no stat has ctime 0, so the file is read at its next capture. */
export const UNREAD_STAMP: FileStamp = { ctimeNs: "0", ino: "0" };

/** How many stamps wait in memory before they are written in a transaction of their own. */
const STAMP_BATCH = 512;

/** A stamp to record, and what the entry must still hold for it to apply. */
interface PendingStamp {
  readonly set: string;
  readonly path: string;
  readonly stamp: FileStamp;
  readonly size: number;
  readonly mtimeNs: string;
  readonly mode: number;
  /** The content the stamp was checked against; undefined: a stamp recorded unread, only over an unknown one. */
  readonly sha256: string | undefined;
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
  ctime_ns: string | null;
  ino: string | null;
}

/** The kind column holds what apply wrote: anything else is a damaged journal. */
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
    ctimeNs: row.ctime_ns,
    ino: row.ino,
  };
}

function rowsAsArrays(statement: StatementSync): StatementSync {
  statement.setReturnArrays(true);
  return statement;
}

/** An index entry's columns, as allEntries selects them. */
type EntryArray = [path: string, kind: string, size: number, mode: number, mtimeNs: string, sha256: string | null, link: string | null, blocks: Uint8Array | null, ctimeNs: string | null, ino: string | null];

function prepare(db: DatabaseSync) {
  const statement = (sql: string): StatementSync => db.prepare(sql);
  return {
    get: statement("SELECT * FROM entries WHERE set_name = ? AND path = ?"),
    // Without statistics the planner scans the whole set by primary key instead: a folder's entries cost the set's size.
    children: statement("SELECT * FROM entries INDEXED BY entries_by_parent WHERE set_name = ? AND parent = ? ORDER BY path"),
    // Rows as arrays: a barrier scan reads every entry of the set, and an object per row cost twice the read (bench/notes.md).
    childrenStat: rowsAsArrays(statement("SELECT path, kind, size, mode, mtime_ns, ctime_ns, ino FROM entries INDEXED BY entries_scan_by_parent WHERE set_name = ? AND parent = ?")),
    under: statement("SELECT * FROM entries WHERE set_name = ? AND path > ? AND path < ? ORDER BY path DESC"),
    orphans: statement(
      "SELECT c.path AS path FROM entries c JOIN entries p ON p.set_name = c.set_name AND p.path = c.parent WHERE c.set_name = ? AND p.kind <> 'dir' ORDER BY c.path DESC",
    ),
    upsert: statement(
      `INSERT INTO entries (set_name, path, parent, kind, size, mode, mtime_ns, sha256, link, blocks, ctime_ns, ino, link_group) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (set_name, path) DO UPDATE SET kind = excluded.kind, size = excluded.size, mode = excluded.mode,
       mtime_ns = excluded.mtime_ns, sha256 = excluded.sha256, link = excluded.link, blocks = excluded.blocks,
       ctime_ns = excluded.ctime_ns, ino = excluded.ino, link_group = excluded.link_group`,
    ),
    // Only over the state it was taken against: a put journaled since (other content, other stamp) wins.
    // The link group only when the stat said (?4 = 1): a scan's packed stat does not.
    stampRead: statement(
      `UPDATE entries SET ctime_ns = ?1, ino = ?2, link_group = iif(?4 = 1, ?3, link_group) WHERE set_name = ?5 AND path = ?6 AND kind = 'file' AND size = ?7 AND mtime_ns = ?8 AND mode = ?9 AND sha256 = ?10`,
    ),
    stampUnknown: statement(
      `UPDATE entries SET ctime_ns = ?1, ino = ?2, link_group = iif(?4 = 1, ?3, link_group) WHERE set_name = ?5 AND path = ?6 AND kind = 'file' AND size = ?7 AND mtime_ns = ?8 AND mode = ?9 AND ctime_ns IS NULL`,
    ),
    otherNames: statement("SELECT path FROM entries INDEXED BY entries_by_link_group WHERE set_name = ? AND link_group = ? AND path <> ? ORDER BY path"),
    move: statement("UPDATE entries SET path = ?, parent = ? WHERE set_name = ? AND path = ?"),
    remove: statement("DELETE FROM entries WHERE set_name = ? AND path = ?"),
    clear: statement("DELETE FROM entries WHERE set_name = ?"),
    count: statement("SELECT count(*) AS n FROM entries WHERE set_name = ?"),
    invalidate: statement(`UPDATE entries SET mtime_ns = '${INVALIDATED_MTIME_NS}', sha256 = NULL, blocks = NULL WHERE set_name = ? AND path = ?`),
  };
}

/** Every index entry of a set, in path order, read lazily from db (the journal's connection, or a reader of its own). */
export function* indexEntries(db: DatabaseSync, set: string): Generator<IndexEntry> {
  // A statement of its own: two manifests may be read at once.
  const statement = rowsAsArrays(db.prepare("SELECT path, kind, size, mode, mtime_ns, sha256, link, blocks, ctime_ns, ino FROM entries WHERE set_name = ? ORDER BY path"));
  for (const row of statement.iterate(set)) {
    const [path, kind, size, mode, mtimeNs, sha256, link, blocks, ctimeNs, ino] = row as unknown as EntryArray;
    yield { path, kind: entryKind(kind), size, mode, mtimeNs, sha256, link, blocks, ctimeNs, ino };
  }
}

export class EntryIndex {
  readonly #db: DatabaseSync;
  readonly #s: ReturnType<typeof prepare>;
  /** Per set, a count of writes to its entries: equal counts mean an unchanged index (a marker's early digest). */
  readonly #writes = new Map<string, number>();
  /** Large files' chunk fingerprints, beside their entries (chunk-index.ts). */
  readonly #chunks: ChunkIndex;
  /** Stamps recorded and not written yet (stamp). */
  readonly #stamps: PendingStamp[] = [];
  /** Writes the stamps in a transaction of their own (the journal's). */
  readonly #onStampsFull: () => void;

  constructor(db: DatabaseSync, onStampsFull: () => void) {
    this.#db = db;
    this.#s = prepare(db);
    this.#chunks = new ChunkIndex(db);
    this.#onStampsFull = onStampsFull;
  }

  /** Brings the index in line with a journaled change (inside the append's transaction). */
  apply(set: string, change: Change): void {
    const s = this.#s;
    this.#wrote(set);
    const upsert = (path: string, kind: EntryKind, size: number, mode: number, mtimeNs: string, sha: string | null, link: string | null, blocks: Uint8Array | null = null, stamp?: FileStamp, linkGroup?: string) =>
      s.upsert.run(set, path, parentOf(path) ?? "", kind, size, mode, mtimeNs, sha, link, blocks, stamp?.ctimeNs ?? null, stamp?.ino ?? null, linkGroup ?? null);
    switch (change.op) {
      case "put":
        // No stamp taken (the content was not read here): one never matched, so the next capture hashes the file once.
        // Only the migration's rows hold none (null), taken unread at the next lstat.
        // The put's own link group (from the stat after its read): a file whose other names went away has none.
        upsert(change.path, "file", change.size, change.mode, change.mtimeNs, change.sha256, null, change.blockHashes ?? null, change.stamp ?? UNREAD_STAMP, change.linkGroup);
        this.#chunks.set(set, change.path, change.sha256, change.chunkHashes);
        break;
      case "rename":
        s.remove.run(set, change.to);
        s.move.run(change.to, parentOf(change.to) ?? "", set, change.from);
        this.#chunks.move(set, change.from, change.to);
        break;
      case "mkdir":
        upsert(change.path, "dir", 0, change.mode, change.mtimeNs, null, null);
        break;
      case "symlink":
        upsert(change.path, "symlink", 0, 0o777, change.mtimeNs, null, change.target);
        break;
      case "delete":
        s.remove.run(set, change.path);
        this.#chunks.remove(set, change.path);
        break;
      case "block":
      case "resync":
      case "verify":
      case "task":
      case "prune":
      case "skip":
      case "drill":
        break;
    }
  }

  entry(set: string, path: string): IndexEntry | undefined {
    const row = this.#s.get.get(set, path) as EntryRow | undefined;
    return row && toEntry(row);
  }

  /** Index entries directly inside dir ("" for the set root). */
  children(set: string, dir: string): IndexEntry[] {
    return (this.#s.children.all(set, dir) as unknown as EntryRow[]).map(toEntry);
  }

  /** What a scan compares the entries directly inside dir by (kind, size, mode, mtime, ctime, inode), by path. */
  childrenStat(set: string, dir: string): Map<string, IndexStat> {
    const rows = this.#s.childrenStat.all(set, dir) as unknown as [path: string, kind: string, size: number, mode: number, mtimeNs: string, ctimeNs: string | null, ino: string | null][];
    return new Map(rows.map(([path, kind, size, mode, mtimeNs, ctimeNs, ino]) => [path, { kind: entryKind(kind), size, mode, mtimeNs, ctimeNs, ino }]));
  }

  /**
   * Records a file's stamp without journaling anything: the stat (and, with sha256, the content read) showed the file
   * as the index has it. Kept in memory and written with the next append, or STAMP_BATCH at a time: a stamp lost in a
   * crash only costs a read (or, over an unknown stamp, is recorded again), while one write per file would be a sync
   * per file. Without sha256 it is recorded only over an unknown stamp (an upgraded journal's entries: see scan).
   */
  stamp(set: string, path: string, known: Pick<IndexEntry, "size" | "mtimeNs" | "mode">, stamp: FileStamp, sha256?: string): void {
    this.#stamps.push({ set, path, stamp, size: known.size, mtimeNs: known.mtimeNs, mode: known.mode, sha256 });
    if (this.#stamps.length >= STAMP_BATCH) this.#onStampsFull();
  }

  /** Whether stamps wait to be written. */
  get stampsPending(): boolean {
    return this.#stamps.length > 0;
  }

  /** Writes the stamps waiting (inside the caller's transaction). */
  writeStamps(): void {
    const stamps = this.#stamps.splice(0);
    for (const { set, path, stamp, size, mtimeNs, mode, sha256 } of stamps) {
      const group = [stamp.linkGroup ?? null, stamp.linkGroup === undefined ? 0 : 1] as const;
      if (sha256 === undefined) this.#s.stampUnknown.run(stamp.ctimeNs, stamp.ino, ...group, set, path, size, mtimeNs, mode);
      else this.#s.stampRead.run(stamp.ctimeNs, stamp.ino, ...group, set, path, size, mtimeNs, mode, sha256);
    }
  }

  /**
   * The other names of a hard-linked file the index knows (those indexed with its link group), in path order. A name
   * linked after its file was last read joins the group when it is next read: a put, or a scan's read of it (the link
   * moved its ctime).
   */
  otherNames(set: string, linkGroup: string, path: string): string[] {
    return (this.#s.otherNames.all(set, linkGroup, path) as { path: string }[]).map((row) => row.path);
  }

  /** Index entries strictly below dir, children before their parents (the order to delete them in). */
  descendants(set: string, dir: string): IndexEntry[] {
    // '/' is 0x2F and '0' is 0x30: [dir/, dir0) holds exactly the paths below dir.
    return (this.#s.under.all(set, `${dir}/`, `${dir}0`) as unknown as EntryRow[]).map(toEntry);
  }

  /**
   * Entries indexed below a path whose entry is no folder (a file or symlink), deepest first: none can be there. An
   * agent from before set-files.ts could index them, reading through a folder swapped for a symlink mid-scan.
   */
  orphans(set: string): string[] {
    return (this.#s.orphans.all(set) as { path: string }[]).map((row) => row.path);
  }

  /** Every index entry of a set, in path order, read lazily (sets may hold millions). */
  allEntries(set: string): Generator<IndexEntry> {
    return indexEntries(this.#db, set);
  }

  /** How many writes the set's entries have had in this process: the index is unchanged while it stays the same. */
  writes(set: string): number {
    return this.#writes.get(set) ?? 0;
  }

  #wrote(set: string): void {
    this.#writes.set(set, this.writes(set) + 1);
  }

  entryCount(set: string): number {
    return (this.#s.count.get(set) as { n: number }).n;
  }

  /** Forgets one entry: the next capture journals it in full. */
  forget(set: string, path: string): void {
    this.#wrote(set);
    this.#s.remove.run(set, path);
  }

  /** Forgets every entry of a set (before a full resync). */
  clear(set: string): void {
    this.#wrote(set);
    this.#s.clear.run(set);
    this.#chunks.clear(set);
  }

  /** The chunk fingerprints indexed for path's content with this sha256, if any (chunk-index.ts). */
  chunkFingerprints(set: string, path: string, sha256: string): Uint8Array | undefined {
    return this.#chunks.get(set, path, sha256);
  }

  /** Makes the index disagree with any stat of path: the next scan or capture journals it again, in full. */
  invalidate(set: string, path: string): void {
    this.#wrote(set);
    this.#s.invalidate.run(set, path);
  }
}
