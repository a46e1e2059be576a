// The chunk fingerprints of indexed files (chunk-hash.ts), in a table of their
// own: megabytes for a large file, read only when that file is captured again,
// never by the scans and listings that read the entries table. Each row names
// the content (sha256) it describes: a row that no longer matches its entry is
// ignored, so it needs no upkeep beyond what the journal's index already does.

import type { DatabaseSync, StatementSync } from "node:sqlite";

const SCHEMA = `
CREATE TABLE IF NOT EXISTS chunk_fingerprints (
  set_name TEXT NOT NULL,
  path TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  fingerprints BLOB NOT NULL,
  PRIMARY KEY (set_name, path)
) WITHOUT ROWID;
`;

export class ChunkIndex {
  readonly #get: StatementSync;
  readonly #put: StatementSync;
  readonly #remove: StatementSync;
  readonly #move: StatementSync;
  readonly #clear: StatementSync;

  constructor(db: DatabaseSync) {
    db.exec(SCHEMA);
    this.#get = db.prepare("SELECT fingerprints FROM chunk_fingerprints WHERE set_name = ? AND path = ? AND sha256 = ?");
    this.#put = db.prepare(
      `INSERT INTO chunk_fingerprints (set_name, path, sha256, fingerprints) VALUES (?, ?, ?, ?)
       ON CONFLICT (set_name, path) DO UPDATE SET sha256 = excluded.sha256, fingerprints = excluded.fingerprints`,
    );
    this.#remove = db.prepare("DELETE FROM chunk_fingerprints WHERE set_name = ? AND path = ?");
    this.#move = db.prepare("UPDATE OR REPLACE chunk_fingerprints SET path = ? WHERE set_name = ? AND path = ?");
    this.#clear = db.prepare("DELETE FROM chunk_fingerprints WHERE set_name = ?");
  }

  /** The fingerprints of path's content with this sha256, or undefined when none are kept for it. */
  get(set: string, path: string, sha256: string): Uint8Array | undefined {
    const row = this.#get.get(set, path, sha256) as { fingerprints: Uint8Array } | undefined;
    return row?.fingerprints;
  }

  /** Keeps the fingerprints of path's content (sha256); without them, forgets path's. */
  set(set: string, path: string, sha256: string, fingerprints: Uint8Array | undefined): void {
    if (fingerprints) this.#put.run(set, path, sha256, fingerprints);
    else this.#remove.run(set, path);
  }

  remove(set: string, path: string): void {
    this.#remove.run(set, path);
  }

  move(set: string, from: string, to: string): void {
    this.#move.run(to, set, from);
  }

  clear(set: string): void {
    this.#clear.run(set);
  }
}
