// A recovery the agent owes a set, kept in the journal's database until it is
// done. A recovery journals a resync and then a verification that makes the
// target equal the source (deleting what the source no longer holds); an
// agent killed between the two leaves a journal whose chain the target
// continues without a break, so nothing else would ever run that
// verification. The row is written before the recovery journals anything and
// goes only once the target reported the verification and its repairs are
// journaled: the agent's next start runs a recovery still owed again, and
// `tidemark status` names the set as recovering meanwhile.

import { randomUUID } from "node:crypto";
import type { DatabaseSync, StatementSync } from "node:sqlite";
import type { OrphanPolicy } from "../contract/layout.ts";

/** A recovery begun and not finished. */
export interface PendingRecovery {
  /** The mirror mode it brings the set back with (operations.ts MIRROR_MODES). */
  readonly mode: string;
  /** What its verification does with what the target holds beyond the source. */
  readonly orphans: OrphanPolicy;
  readonly reason: string;
  /** When it began (ISO 8601). */
  readonly since: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS pending_recoveries (
  set_name TEXT PRIMARY KEY,
  mode TEXT NOT NULL,
  orphans TEXT NOT NULL,
  reason TEXT NOT NULL,
  since TEXT NOT NULL,
  token TEXT NOT NULL
) WITHOUT ROWID;`;

export class PendingRecoveries {
  readonly #begin: StatementSync;
  readonly #get: StatementSync;
  readonly #end: StatementSync;
  readonly #token: StatementSync;
  /** Per set, the token of the recovery this process runs, until it ends or fails. */
  readonly #running = new Map<string, string>();

  constructor(db: DatabaseSync) {
    db.exec(SCHEMA);
    this.#begin = db.prepare("INSERT OR REPLACE INTO pending_recoveries (set_name, mode, orphans, reason, since, token) VALUES (?, ?, ?, ?, ?, ?)");
    this.#get = db.prepare("SELECT mode, orphans, reason, since FROM pending_recoveries WHERE set_name = ?");
    this.#end = db.prepare("DELETE FROM pending_recoveries WHERE set_name = ? AND token = ?");
    this.#token = db.prepare("SELECT token FROM pending_recoveries WHERE set_name = ?");
  }

  /**
   * Records a recovery of the set as owed (one a set: a later one replaces it, keeping when the first began).
   * Returns its token: only the recovery that began last ends it.
   */
  begin(set: string, recovery: Omit<PendingRecovery, "since">, now: Date = new Date()): string {
    const since = this.of(set)?.since ?? now.toISOString();
    const token = randomUUID();
    this.#begin.run(set, recovery.mode, recovery.orphans, recovery.reason, since, token);
    this.#running.set(set, token);
    return token;
  }

  /** The recovery that got token no longer runs in this process (done, or failed: then still owed). */
  settle(set: string, token: string): void {
    if (this.#running.get(set) === token) this.#running.delete(set);
  }

  /** True while this process runs the set's latest recovery. */
  running(set: string): boolean {
    return this.#running.has(set);
  }

  /** The recovery the set is owed, or undefined. */
  of(set: string): PendingRecovery | undefined {
    const row = this.#get.get(set) as { mode: string; orphans: OrphanPolicy; reason: string; since: string } | undefined;
    return row && { mode: row.mode, orphans: row.orphans, reason: row.reason, since: row.since };
  }

  /** The token of the recovery the set is owed, or undefined: an operator's mirror that does its work ends it. */
  tokenOf(set: string): string | undefined {
    const row = this.#token.get(set) as { token: string } | undefined;
    return row?.token;
  }

  /** The recovery that got token is done (its verification reported, its repairs journaled), unless another began since. */
  end(set: string, token: string): void {
    this.#end.run(set, token);
  }
}
