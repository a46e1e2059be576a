// What the journal keeps of a volume set (DESIGN 6): the sha256 of each block
// as journaled, the volume's size, and the stamp of the image file at the
// last complete scan, so the next scan reads only what can have changed.

import type { DatabaseSync, StatementSync } from "node:sqlite";
import { blockCount } from "../contract/wire.ts";
import type { Change } from "./journal.ts";

function prepare(db: DatabaseSync) {
  const statement = (sql: string): StatementSync => db.prepare(sql);
  return {
    upsertBlock: statement("INSERT INTO volume_blocks (set_name, idx, sha256) VALUES (?, ?, ?) ON CONFLICT (set_name, idx) DO UPDATE SET sha256 = excluded.sha256"),
    blockRange: statement("SELECT idx, sha256 FROM volume_blocks WHERE set_name = ? AND idx >= ? AND idx < ?"),
    dropBlocksFrom: statement("DELETE FROM volume_blocks WHERE set_name = ? AND idx >= ?"),
    clearBlocks: statement("DELETE FROM volume_blocks WHERE set_name = ?"),
    get: statement("SELECT size, stamp FROM volumes WHERE set_name = ?"),
    upsertSize: statement("INSERT INTO volumes (set_name, size) VALUES (?, ?) ON CONFLICT (set_name) DO UPDATE SET size = excluded.size"),
    setStamp: statement("UPDATE volumes SET stamp = ? WHERE set_name = ?"),
    clear: statement("DELETE FROM volumes WHERE set_name = ?"),
  };
}

export class VolumeStamps {
  readonly #s: ReturnType<typeof prepare>;

  constructor(db: DatabaseSync) {
    this.#s = prepare(db);
  }

  /** Records the blocks of journaled changes (inside the append's transaction). */
  apply(set: string, changes: readonly Change[]): void {
    for (const change of changes) if (change.op === "block") this.#s.upsertBlock.run(set, change.index, change.sha256);
    // A volume's size once per append, not per block: the blocks of one scan all carry the same.
    const sized = changes.findLast((change) => change.op === "block");
    if (sized) {
      this.#s.upsertSize.run(set, sized.volumeSize);
      this.#s.dropBlocksFrom.run(set, blockCount(sized.volumeSize));
    }
  }

  /** The sha256 of the blocks of a volume set in [from, to) as journaled, by index. */
  blocks(set: string, from: number, to: number): Map<number, string> {
    const rows = this.#s.blockRange.all(set, from, to) as unknown as { idx: number; sha256: string }[];
    return new Map(rows.map((row) => [row.idx, row.sha256]));
  }

  /** A volume set's size as last journaled, and the stamp of the file at the last complete scan (null: read it all next time). */
  volume(set: string): { size: number; stamp: string | null } | undefined {
    return this.#s.get.get(set) as { size: number; stamp: string | null } | undefined;
  }

  /** Records the volume file's stamp after a scan read all of it (null forgets it). */
  setStamp(set: string, stamp: string | null): void {
    this.#s.setStamp.run(stamp, set);
  }

  /** Forgets a set's blocks and size (before a full resync): every block is journaled again. */
  clear(set: string): void {
    this.#s.clearBlocks.run(set);
    this.#s.clear.run(set);
  }
}
