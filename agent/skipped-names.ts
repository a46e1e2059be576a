// Entries a set holds but cannot replicate: names the target cannot carry (a
// newline or another control character, a backslash, bytes that are not
// UTF-8, a path over S3's key length), sockets, FIFOs and devices (no
// content to replicate; excluding them accepts that), and files or folders
// the agent may not read, or links whose target is not UTF-8 (scans and
// captures go on past them). Kept in the journal's database so `tidemark
// status` names them; an entry leaves the list once a scan no longer finds it
// under that name (deleted, renamed to a name that works, excluded) or reads
// it after all, and status checks that each is still there (one it cannot
// look at, a permission error, is not gone: it stays named).

import { lstatSync, readdirSync } from "node:fs";
import { join } from "node:path";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import { setPathProblem } from "../contract/paths.ts";
import type { EntryStat } from "./folder-stats.ts";
import { LINK_TARGET_NOT_UTF8 } from "./link-target.ts";

/** Why a name read back with U+FFFD in place of its bytes is not replicated. */
export const NOT_UTF8 = "name is not valid UTF-8 (S3 keys are UTF-8)";

/**
 * Whether an lstat's error says the entry is not there. Any other error says nothing of that: EACCES under a folder
 * the user may read but not search (the entry is listed, and cannot be looked at), EPERM, EIO.
 */
export function isGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}

/** What an lstat of path tells: the entry is there, gone, or it could not tell (a permission error). */
type Look = "there" | "gone" | "unknown";

function look(path: string | Buffer, isSpecial = false): Look {
  try {
    const stat = lstatSync(path, { bigint: true });
    return !isSpecial || specialFileProblem(stat) !== undefined ? "there" : "gone";
  } catch (error) {
    return isGone(error) ? "gone" : "unknown";
  }
}

/** Whether an entry (of any kind, a dangling link too) is at path, or may be: one that cannot be looked at is not gone. */
export function exists(path: string | Buffer): boolean {
  return look(path) !== "gone";
}

/**
 * Why the entry at `path` in a set cannot be replicated under its name, or
 * undefined when it can. Besides the set path rules: a name that is not valid
 * UTF-8 reads back with U+FFFD in place of its bytes, and no file has that name.
 */
export function unreplicableName(root: string, path: string): string | undefined {
  const problem = setPathProblem(path);
  if (problem !== undefined) return problem;
  if (path.includes("\uFFFD") && !exists(join(root, path))) return NOT_UTF8;
  return undefined;
}

/**
 * Whether `path` (read from a listing, so a name that is not UTF-8 shows U+FFFD
 * in place of its bytes) names an entry under root whose name is not UTF-8:
 * each such component is matched against its folder's raw listing. False once
 * that entry is gone (deleted, or renamed to another name).
 */
export function nonUtf8EntryExists(root: string, path: string): boolean {
  if (!path.includes("\uFFFD")) return false;
  let at = Buffer.from(root);
  let raw = false;
  for (const part of path.split("/")) {
    const plain = Buffer.concat([at, Buffer.from(`/${part}`)]);
    if (exists(plain)) {
      at = plain;
      continue;
    }
    if (!part.includes("\uFFFD")) return false;
    let names: Buffer[];
    try {
      names = readdirSync(at, { encoding: "buffer" });
    } catch {
      return false;
    }
    const match = names.find((name) => name.toString("utf8") === part);
    if (match === undefined) return false;
    at = Buffer.concat([at, Buffer.from("/"), match]);
    raw = true;
  }
  return raw;
}

/** File type bits of a mode (S_IFMT) and the special types under them. */
const S_IFMT = 0o170000n;
const SPECIAL_TYPES: readonly (readonly [bigint, string])[] = [
  [0o140000n, "a socket"],
  [0o010000n, "a FIFO"],
  [0o060000n, "a block device"],
  [0o020000n, "a character device"],
];
const NO_CONTENT = ": no content to replicate";

/** Why an entry that is neither a file, a folder nor a symlink is not replicated; undefined for one that is (or is gone). */
export function specialFileProblem(stat: EntryStat | undefined): string | undefined {
  if (!stat || stat.isFile() || stat.isDirectory() || stat.isSymbolicLink()) return undefined;
  const type = SPECIAL_TYPES.find(([bits]) => (stat.mode & S_IFMT) === bits)?.[1] ?? "a special file";
  return `${type}${NO_CONTENT}`;
}

/** Errors reading an entry that are the entry's own (its permissions, what it is): one such entry must not stop a scan. */
const UNREADABLE_CODES: ReadonlySet<string> = new Set(["EACCES", "EPERM", "ENXIO", "ENODEV", "EILSEQ"]);
const UNREADABLE = "cannot be read: ";

/** Why an entry is not replicated when reading it failed with error; undefined for errors that are not the entry's (a full disk, ...). */
export function unreadableProblem(error: unknown): string | undefined {
  if (!(error instanceof Error)) return undefined;
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && UNREADABLE_CODES.has(code) ? `${UNREADABLE}${error.message}` : undefined;
}

/** What a user does about a skipped entry: a special file is excluded (accepting it is not replicated), an unreadable one made readable, a name renamed. */
export function skippedRemedy(reason: string): string {
  if (reason.endsWith(NO_CONTENT)) return "exclude it in the set's config to accept that";
  if (reason === `${UNREADABLE}${LINK_TARGET_NOT_UTF8}`) return "point the link at a UTF-8 target, or exclude it";
  if (reason.startsWith(UNREADABLE)) return "let the agent read it, or exclude it";
  return "rename it to replicate it";
}

export interface SkippedName {
  /** The entry's path in the set, as read from the disk. */
  readonly path: string;
  readonly reason: string;
  /** When it was first found (ISO 8601). */
  readonly since: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS skipped_names (
  set_name TEXT NOT NULL,
  path TEXT NOT NULL,
  reason TEXT NOT NULL,
  since TEXT NOT NULL,
  PRIMARY KEY (set_name, path)
) WITHOUT ROWID;`;

/** The LIKE pattern of everything below a folder ("" is the set's root), with LIKE's wildcards escaped. */
function below(folder: string): string {
  return folder === "" ? "%" : `${folder.replace(/[\\%_]/g, (c) => `\\${c}`)}/%`;
}

export class SkippedNames {
  readonly #db: DatabaseSync;
  readonly #add: StatementSync;
  readonly #list: StatementSync;
  readonly #forgetBelow: StatementSync;
  readonly #listed: StatementSync;
  readonly #forget: StatementSync;
  readonly #anyUnreadable: StatementSync;
  readonly #remove: StatementSync;
  /** Per set, whether it lists any unreadable entry, as last read (this instance is the only writer while the agent runs). */
  readonly #hasUnreadable = new Map<string, boolean>();

  constructor(db: DatabaseSync) {
    this.#db = db;
    db.exec(SCHEMA);
    this.#add = db.prepare("INSERT INTO skipped_names (set_name, path, reason, since) VALUES (?, ?, ?, ?) ON CONFLICT (set_name, path) DO UPDATE SET reason = excluded.reason");
    this.#list = db.prepare("SELECT path, reason, since FROM skipped_names WHERE set_name = ? ORDER BY path");
    this.#forgetBelow = db.prepare("DELETE FROM skipped_names WHERE set_name = ? AND path LIKE ? ESCAPE '\\'");
    // Only entries listed as unreadable: a name the target cannot carry stays listed however it was captured.
    this.#listed = db.prepare("SELECT 1 AS listed FROM skipped_names WHERE set_name = ? AND path = ? AND substr(reason, 1, ?) = ?");
    this.#forget = db.prepare("DELETE FROM skipped_names WHERE set_name = ? AND path = ? AND substr(reason, 1, ?) = ?");
    this.#anyUnreadable = db.prepare("SELECT 1 AS listed FROM skipped_names WHERE set_name = ? AND substr(reason, 1, ?) = ? LIMIT 1");
    this.#remove = db.prepare("DELETE FROM skipped_names WHERE set_name = ? AND path = ?");
  }

  /**
   * What a scan of `folder` found unreplicable. A scan that went through the
   * whole folder replaces the list below it (what it did not find is gone or
   * renamed); one that stopped early only adds.
   */
  record(set: string, folder: string, found: readonly { path: string; reason: string }[], complete: boolean): void {
    const now = new Date().toISOString();
    this.#hasUnreadable.delete(set);
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      if (complete) this.#forgetBelow.run(set, below(folder));
      for (const entry of found) this.#add.run(set, entry.path, entry.reason, now);
      this.#db.exec("COMMIT");
    } catch (error) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  /**
   * A file listed as unreadable was captured after all: it leaves the list. Most captured paths were never
   * listed, and most sets list no unreadable entry at all: then no query is made.
   */
  captured(set: string, path: string): void {
    let any = this.#hasUnreadable.get(set);
    if (any === undefined) this.#hasUnreadable.set(set, (any = this.#anyUnreadable.get(set, UNREADABLE.length, UNREADABLE) !== undefined));
    if (!any || this.#listed.get(set, path, UNREADABLE.length, UNREADABLE) === undefined) return;
    this.#forget.run(set, path, UNREADABLE.length, UNREADABLE);
    this.#hasUnreadable.delete(set);
  }

  /** The entry at path is gone (deleted or renamed): it leaves the list, whatever it was listed for. */
  gone(set: string, path: string): void {
    this.#remove.run(set, path);
    this.#hasUnreadable.delete(set);
  }

  list(set: string): SkippedName[] {
    return this.#list.all(set).map((row) => ({ path: String(row.path), reason: String(row.reason), since: String(row.since) }));
  }
}

/** Whether path is below one of folders. */
function isBelowAny(path: string, folders: ReadonlySet<string>): boolean {
  for (let at = path.lastIndexOf("/"); at > 0; at = path.lastIndexOf("/", at - 1)) if (folders.has(path.slice(0, at))) return true;
  return false;
}

/**
 * The set's skipped entries that are still on the disk under that name (one deleted or renamed since the last scan is
 * not listed). One that cannot be looked at (status run as a user who may list its folder but not search it, as the
 * agent's own scan found it) stays listed: only an lstat that says it is gone takes it off. Except below a folder the
 * list names as unreadable, which that folder's line covers (the watcher names a folder's own event below it).
 */
export function skippedNow(names: SkippedNames, set: string, root: string): SkippedName[] {
  const listed = names.list(set);
  const unreadableFolders = new Set(listed.filter((entry) => entry.reason.startsWith(UNREADABLE)).map((entry) => entry.path));
  const state = (entry: SkippedName): Look => {
    // A socket, FIFO or device counts while it is one (one a file replaced was captured as that file).
    if (entry.reason.endsWith(NO_CONTENT)) return look(join(root, entry.path), true);
    const found = look(join(root, entry.path));
    // A name that is not UTF-8 cannot be looked up by its decoded form: its folder's raw listing is searched.
    return found === "gone" && nonUtf8EntryExists(root, entry.path) ? "there" : found;
  };
  return listed.filter((entry) => {
    const found = state(entry);
    return found === "there" || (found === "unknown" && !isBelowAny(entry.path, unreadableFolders));
  });
}
