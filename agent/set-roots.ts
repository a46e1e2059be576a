// Each tree set's root folder as the agent last knew it good (the device, inode
// and birth time of the folder its path resolves to), and the hold on a set
// whose root went missing, was swapped for another folder, or came back empty
// (an unmounted disk leaves its mount point), or stopped answering (a hung
// network file system). A held set journals nothing that would delete or alter
// the target: Journal.append refuses it for every path that journals (watcher,
// scans, verify, mirrors, recoveries, markers). The root is looked at only
// asynchronously (RootLook), one look at a time and within a time limit
// (root-watch.ts): a stat of a hard-mounted NFS root whose server went away
// never returns, and the agent's thread must never wait on one.

import type { BigIntStats } from "node:fs";
import { lstat, opendir, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import type { DatabaseSync, StatementSync } from "node:sqlite";

export const ROOT_STATES = ["root-missing", "root-changed", "root-empty", "root-unreadable", "root-unresponsive"] as const;
export type RootState = (typeof ROOT_STATES)[number];

/** A root folder as the agent knew it good: the device, inode and birth time of the folder the path resolves to. */
export interface RootIdentity {
  readonly dev: string;
  readonly ino: string;
  /**
   * When the folder was made (ns since the epoch, statx's btime): a folder deleted and made again, or another file
   * system's, can get the same inode number, rarely the same birth time. "0": the file system records none;
   * absent: not recorded yet (a journal from before birth times were), learned at the next good check.
   */
  readonly birthNs?: string;
  /** The resolved folder (a symlinked root's target), for the operator. */
  readonly realPath: string;
}

/** Why a set is held: what was expected at its root and what is there, since when. */
export interface RootHold {
  readonly set: string;
  readonly state: RootState;
  readonly root: string;
  readonly expected: string;
  readonly found: string;
  readonly since: string;
}

/**
 * The look itself failed, not the file system: the process looking (root-look-process.ts) could not start, or ended
 * with the look outstanding. It says nothing of the root, so the set is held as not answering (root-unresponsive),
 * not as missing or unreadable; the next look starts a new process.
 */
export class RootLookError extends Error {
  override name = "RootLookError";
}

/** What a check of a root found: good (its identity, and whether it must be recorded again), or why it is held. */
export type RootVerdict =
  | { readonly ok: true; readonly identity: RootIdentity; readonly renumbered: boolean; readonly birthLearned: boolean }
  | { readonly ok: false; readonly state: RootState; readonly expected: string; readonly found: string };

/** The set is held (its root is missing, swapped or empty): nothing of it is journaled until the root is back or accepted. */
export class RootHeldError extends Error {
  override name = "RootHeldError";
  readonly hold: RootHold;
  constructor(hold: RootHold, what = "nothing of the set is journaled") {
    super(`set "${hold.set}" is held (${hold.state}): ${describeHold(hold)}; ${what} until the root is back, or \`tidemark accept-root ${hold.set}\` accepts the folder there now`);
    this.hold = hold;
  }
}

/** One line: the root, what was expected there and what is found. */
export function describeHold(hold: Pick<RootHold, "state" | "root" | "expected" | "found">): string {
  const what = {
    "root-missing": "is missing",
    "root-changed": "is another folder than the one replicated",
    "root-empty": "is empty while the journal knows files under it",
    "root-unreadable": "cannot be read by the agent",
    "root-unresponsive": "has not answered the agent's look at it (a stat, a listing) in time: a hung network file system?",
  }[hold.state];
  return `the root ${hold.root} ${what} (expected ${hold.expected}; found ${hold.found})`;
}

/** What the operator does about a hold, per state. */
export function holdRemedy(hold: Pick<RootHold, "state" | "set">): string {
  const accept = `\`tidemark accept-root ${hold.set}\``;
  switch (hold.state) {
    case "root-missing":
      return `mount the disk or move the folder back (the set resumes by itself within seconds, with a normal scan), or ${accept} once the right folder is in place`;
    case "root-changed":
      return `put the original folder back (remount, point the symlink back: the set resumes by itself), or run ${accept} if this folder is the set now (a new disk, a restored copy): the next scan then journals the real differences, deletes included`;
    case "root-empty":
      return `mount the disk again if it was unmounted (the set resumes by itself), or, if everything was deleted on purpose, run ${accept}: the deletes are replicated then`;
    case "root-unreadable":
      return `give the agent's user read and search access to the root again (the set resumes by itself), or ${accept} once it can`;
    case "root-unresponsive":
      return "find why the file system at the root does not answer (a network file system whose server or network is down: `stat` of the root hangs too) and bring it back; the set resumes by itself once the root answers, with a normal scan. Other sets go on meanwhile";
  }
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS set_roots (
  set_name TEXT PRIMARY KEY,
  root TEXT NOT NULL,
  dev TEXT,
  ino TEXT,
  real_path TEXT,
  birth_ns TEXT,
  recorded_at TEXT,
  accepted INTEGER NOT NULL DEFAULT 0,
  hold_state TEXT,
  hold_expected TEXT,
  hold_found TEXT,
  hold_since TEXT
);`;

interface RootRow {
  set_name: string;
  root: string;
  dev: string | null;
  ino: string | null;
  real_path: string | null;
  birth_ns: string | null;
  accepted: number;
  hold_state: string | null;
  hold_expected: string | null;
  hold_found: string | null;
  hold_since: string | null;
}

/** A set's root as the journal tracks it. */
export interface TrackedRoot {
  readonly root: string;
  readonly identity?: RootIdentity;
  /** An operator accepted the root (accept-root): it may be empty until a scan of it succeeded. */
  readonly accepted: boolean;
  readonly hold?: RootHold;
}

/** Entries of the index sampled when a root's device number changed but its inode did not. */
const SAMPLE = 8;

function prepare(db: DatabaseSync) {
  const statement = (sql: string): StatementSync => db.prepare(sql);
  return {
    get: statement("SELECT * FROM set_roots WHERE set_name = ?"),
    all: statement("SELECT * FROM set_roots ORDER BY set_name"),
    record: statement(
      `INSERT INTO set_roots (set_name, root, dev, ino, real_path, birth_ns, recorded_at, accepted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (set_name) DO UPDATE SET root = excluded.root, dev = excluded.dev, ino = excluded.ino, real_path = excluded.real_path,
       birth_ns = excluded.birth_ns, recorded_at = excluded.recorded_at, accepted = excluded.accepted, hold_state = NULL, hold_expected = NULL, hold_found = NULL, hold_since = NULL`,
    ),
    hold: statement(
      `INSERT INTO set_roots (set_name, root, hold_state, hold_expected, hold_found, hold_since) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (set_name) DO UPDATE SET root = excluded.root, hold_state = excluded.hold_state, hold_expected = excluded.hold_expected, hold_found = excluded.hold_found,
       hold_since = coalesce(set_roots.hold_since, excluded.hold_since)`,
    ),
    release: statement("UPDATE set_roots SET hold_state = NULL, hold_expected = NULL, hold_found = NULL, hold_since = NULL WHERE set_name = ?"),
    settle: statement("UPDATE set_roots SET accepted = 0 WHERE set_name = ?"),
    knowsEntries: statement("SELECT 1 AS found FROM entries WHERE set_name = ? LIMIT 1"),
    sample: statement(`SELECT path FROM entries WHERE set_name = ? AND parent = '' LIMIT ${SAMPLE}`),
  };
}

function holdOf(row: RootRow): RootHold | undefined {
  const state = ROOT_STATES.find((s) => s === row.hold_state);
  if (!state) return undefined;
  return { set: row.set_name, state, root: row.root, expected: row.hold_expected ?? "", found: row.hold_found ?? "", since: row.hold_since ?? "" };
}

function tracked(row: RootRow): TrackedRoot {
  const hold = holdOf(row);
  const identity =
    row.dev !== null && row.ino !== null ? { dev: row.dev, ino: row.ino, realPath: row.real_path ?? row.root, ...(row.birth_ns !== null ? { birthNs: row.birth_ns } : {}) } : undefined;
  return { root: row.root, accepted: row.accepted === 1, ...(identity ? { identity } : {}), ...(hold ? { hold } : {}) };
}

/** What the identity of a root is read from: a stat of the path, following symlinks, with bigint fields. */
export type RootStat = Pick<BigIntStats, "dev" | "ino" | "birthtimeNs" | "isDirectory">;

/** Stats a root (throws the stat's error); synchronous: a test's stand-in for the look's stat. */
export type StatRoot = (root: string) => RootStat;

/**
 * What the agent's look at a root reads, each asynchronously (off the agent's thread): any of them may never settle
 * (a hard-mounted network file system whose server went away), so a look runs one at a time per root, within a time
 * limit (root-watch.ts). Each throws the file system's error.
 */
export interface RootLook {
  /** Stats the root, following symlinks. */
  stat(root: string): Promise<RootStat>;
  /** The folder the root resolves to. */
  realpath(root: string): Promise<string>;
  /** Whether the folder holds no entry. */
  isEmpty(root: string): Promise<boolean>;
  /** Whether anything is at the path (not following a symlink there). */
  exists(path: string): Promise<boolean>;
  /**
   * The stat and, read right after it, whether the folder is empty, as one look (one round trip to the look process
   * for the look before every batch, instead of two): `empty` settles as isEmpty would have. Without it, a look asks
   * stat and isEmpty one after the other.
   */
  statAndEmpty?(root: string): Promise<StatAndEmpty>;
}

/** A stat of a root and whether it is empty (its error, as isEmpty would throw it, kept for when it is asked). */
export interface StatAndEmpty {
  readonly stat: RootStat;
  readonly empty: Promise<boolean>;
}

/** `empty` as a promise that may be left unasked: a rejection nobody awaits is no unhandled one. */
export function emptinessOf(empty: boolean | Error): Promise<boolean> {
  if (typeof empty === "boolean") return Promise.resolve(empty);
  const failed = Promise.reject(empty);
  failed.catch(() => undefined);
  return failed;
}

/** The look through the thread pool (node:fs/promises). */
export const lookHere: RootLook = {
  stat: (root) => stat(root, { bigint: true }),
  realpath: (root) => realpath(root),
  isEmpty: async (root) => {
    const dir = await opendir(root);
    try {
      return (await dir.read()) === null;
    } finally {
      await dir.close();
    }
  },
  exists: (path) => lstat(path).then(() => true),
};

/** The identity of the folder st is of, at root, which resolves to realPath. */
export function identityOf(st: RootStat, realPath: string): RootIdentity {
  return { dev: String(st.dev), ino: String(st.ino), realPath, birthNs: String(st.birthtimeNs) };
}

/** Whether the birth time is one the file system recorded (not absent, not 0). */
const bornKnown = (birthNs: string | undefined): birthNs is string => birthNs !== undefined && birthNs !== "0";

const NS_PER_S = 1_000_000_000n;

/** A birth time to the nanosecond (two folders made in the same millisecond differ there). */
function bornAt(birthNs: string): string {
  const ns = BigInt(birthNs);
  const fraction = ((ns % NS_PER_S) + NS_PER_S) % NS_PER_S;
  const seconds = (ns - fraction) / NS_PER_S;
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}.${String(fraction).padStart(9, "0")}Z`;
}

/** The folder for the operator; `born`: with its birth time, when that is what tells two folders apart. */
const named = (identity: RootIdentity, born = false) =>
  `folder ${identity.realPath} (device ${identity.dev}, inode ${identity.ino}${born && bornKnown(identity.birthNs) ? `, born ${bornAt(identity.birthNs)}` : ""})`;

/** A look that failed itself (RootLookError): the root did not answer it. */
const unanswered = (expected: string, error: RootLookError): RootVerdict => ({ ok: false, state: "root-unresponsive", expected, found: `no answer: ${error.message}` });

/** The sets' roots in the journal's database (written in its transactions: see Journal). */
export class SetRoots {
  readonly #s: ReturnType<typeof prepare>;
  /** How the agent looks at a root (asynchronously); its stat is the stand-in statRoot when a test gives one. */
  readonly look: RootLook;

  constructor(db: DatabaseSync, statRoot?: StatRoot, look: Partial<RootLook> = {}) {
    db.exec(SCHEMA);
    // Journals from before birth times were recorded gain the column as NULL: the next good check records it.
    const columns = db.prepare("PRAGMA table_info(set_roots)").all() as { name: string }[];
    if (!columns.some((c) => c.name === "birth_ns")) db.exec("ALTER TABLE set_roots ADD COLUMN birth_ns TEXT");
    this.#s = prepare(db);
    // Each method taken from `look` by name, bound to it: a spread would copy none of a class's (RootLookProcess).
    const stand = statRoot ? async (root: string) => statRoot(root) : undefined;
    this.look = {
      stat: look.stat?.bind(look) ?? stand ?? lookHere.stat,
      realpath: look.realpath?.bind(look) ?? lookHere.realpath,
      isEmpty: look.isEmpty?.bind(look) ?? lookHere.isEmpty,
      exists: look.exists?.bind(look) ?? lookHere.exists,
      // Only the look's own (RootLookProcess): a test's stand-in stat or isEmpty must not be passed by.
      ...(look.statAndEmpty ? { statAndEmpty: look.statAndEmpty.bind(look) } : {}),
    };
  }

  of(set: string): TrackedRoot | undefined {
    const row = this.#s.get.get(set) as RootRow | undefined;
    return row && tracked(row);
  }

  held(set: string): RootHold | undefined {
    const row = this.#s.get.get(set) as RootRow | undefined;
    return row && holdOf(row);
  }

  /** The sets whose root the journal tracks. */
  tracked(): string[] {
    return (this.#s.all.all() as unknown as RootRow[]).map((row) => row.set_name);
  }

  /** Every set held now. */
  holds(): RootHold[] {
    return (this.#s.all.all() as unknown as RootRow[]).flatMap((row) => holdOf(row) ?? []);
  }

  /** Throws RootHeldError while the set is held; `what` says what is refused. */
  assertNotHeld(set: string, what?: string): void {
    const hold = this.held(set);
    if (hold) throw new RootHeldError(hold, what);
  }

  /** The root is good: its identity is recorded and any hold ends. `accepted`: an operator's accept-root (an empty root is taken as is). */
  record(set: string, root: string, identity: RootIdentity, accepted = false): void {
    this.#s.record.run(set, root, identity.dev, identity.ino, identity.realPath, identity.birthNs ?? null, new Date().toISOString(), accepted ? 1 : 0);
  }

  /** Holds the set (keeping since when, while it stays held). */
  hold(set: string, root: string, verdict: Extract<RootVerdict, { ok: false }>): RootHold {
    this.#s.hold.run(set, root, verdict.state, verdict.expected, verdict.found, new Date().toISOString());
    return this.held(set) ?? { set, root, state: verdict.state, expected: verdict.expected, found: verdict.found, since: new Date().toISOString() };
  }

  release(set: string): void {
    this.#s.release.run(set);
  }

  /** Whether the folder at root is there, readable and holds no entry. */
  isEmpty(root: string): Promise<boolean> {
    return this.look.isEmpty(root).catch(() => false);
  }

  /** A scan of an accepted root succeeded: from now on an empty root is held again. */
  settle(set: string): void {
    this.#s.settle.run(set);
  }

  /**
   * Looks at the set's root now, through `look` (asynchronous, and may never settle: root-watch.ts bounds it).
   * `deleting`: also whether the root is empty while the index knows entries below it.
   */
  async inspect(set: string, root: string, options: { deleting?: boolean } = {}): Promise<RootVerdict> {
    const known = this.of(set);
    const recorded = known?.identity;
    const expected = recorded ? named(recorded) : `the folder at ${root}`;
    const askEmpty = options.deleting === true && !known?.accepted;
    let st: RootStat;
    let emptiness: Promise<boolean> | undefined;
    try {
      if (askEmpty && this.look.statAndEmpty) ({ stat: st, empty: emptiness } = await this.look.statAndEmpty(root));
      else st = await this.look.stat(root);
    } catch (error) {
      if (error instanceof RootLookError) return unanswered(expected, error);
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      if (code === "EACCES" || code === "EPERM") return { ok: false, state: "root-unreadable", expected, found: `${code}: the agent may not look up ${root}` };
      return { ok: false, state: "root-missing", expected, found: code === "ENOENT" || code === "ENOTDIR" ? `nothing (${code})` : `an error (${code})` };
    }
    if (!st.isDirectory()) return { ok: false, state: "root-missing", expected, found: "not a directory" };
    // The recorded folder's stat: its real path as recorded (a look less before every batch journaled). Otherwise
    // looked up; gone between the stat and here: the path as configured.
    const unmoved = recorded !== undefined && recorded.dev === String(st.dev) && recorded.ino === String(st.ino) && recorded.birthNs === String(st.birthtimeNs);
    const identity = identityOf(st, unmoved ? recorded.realPath : await this.look.realpath(root).catch(() => root));
    if (recorded) {
      const same = await this.#sameFolder(set, root, recorded, identity);
      if (same !== "same") return { ok: false, state: "root-changed", expected: named(recorded, same === "born"), found: named(identity, same === "born") };
    }
    // Same inode on another device number (some file systems renumber devices after a reboot): the birth time or the
    // sample of known entries found it the same folder.
    const renumbered = recorded !== undefined && recorded.dev !== identity.dev;
    // A journal from before birth times (or a file system that started recording them): learned now, compared from now on.
    const birthLearned = recorded !== undefined && !bornKnown(recorded.birthNs) && (recorded.birthNs === undefined || bornKnown(identity.birthNs));
    if (askEmpty) {
      let empty: boolean;
      try {
        empty = await (emptiness ?? this.look.isEmpty(root));
      } catch (error) {
        if (error instanceof RootLookError) return unanswered(expected, error);
        const code = (error as NodeJS.ErrnoException).code ?? String(error);
        if (code === "ENOENT" || code === "ENOTDIR") return { ok: false, state: "root-missing", expected, found: `nothing (${code})` };
        return { ok: false, state: "root-unreadable", expected, found: `${code}: the agent may not list ${root}` };
      }
      if (empty && this.#s.knowsEntries.get(set) !== undefined) return { ok: false, state: "root-empty", expected: `${expected}, holding the files the journal knows`, found: "an empty folder" };
    }
    return { ok: true, identity, renumbered, birthLearned };
  }

  /**
   * Whether a root held empty may resume: most of the entries the journal knows at the top of the set are back
   * (restored, remounted), or, when it knows none (a lost journal: the target holds the files), the folder holds
   * anything. A file written into the emptied folder is not enough, even under a name the set had (an application
   * making its log or lock file again): the old entries' deletes would go with it. So the same majority as for a
   * renumbered device: one name back of several does not release it.
   */
  async emptyRootRefilled(set: string, root: string): Promise<boolean> {
    if (this.#s.knowsEntries.get(set) !== undefined) return this.#sampleFound(set, root);
    return !(await this.isEmpty(root));
  }

  /**
   * Whether the folder found at a recorded root's path is the recorded one: "same", "born" (the same device and inode,
   * or a renumbered device, but another birth time: a folder made again), or "other". Birth times count only when
   * both are known: a file system that records none is judged by device, inode and the sample, as before them.
   */
  async #sameFolder(set: string, root: string, recorded: RootIdentity, found: RootIdentity): Promise<"same" | "born" | "other"> {
    if (recorded.ino !== found.ino) return "other";
    if (bornKnown(recorded.birthNs) && bornKnown(found.birthNs)) return recorded.birthNs === found.birthNs ? "same" : "born";
    if (recorded.dev === found.dev) return "same";
    return (await this.#sampleFound(set, root)) ? "same" : "other";
  }

  /**
   * Whether most of a few entries the index knows at the top of the set are there (none known: an empty set, nothing
   * to disprove). Most, not any: another folder shares a common name (README.md, src, lost+found) easily. A set
   * knowing one or two entries at its top needs all of them: a hold is undone with accept-root, deletes sent from
   * another folder are not.
   */
  async #sampleFound(set: string, root: string): Promise<boolean> {
    const sample = this.#s.sample.all(set) as { path: string }[];
    if (sample.length === 0) return true;
    // One after another: a look holds at most one of the thread pool's threads, also when the root hangs.
    let there = 0;
    for (const { path } of sample) if (await this.look.exists(join(root, path)).catch(() => false)) there += 1;
    return there * 2 > sample.length;
  }
}
