// Folder objects a message would write only to overwrite them again: a
// folder's mode and mtime change with every entry created in it, so a message
// often sets the same folder several times. Only the last of those writes
// reaches the store; each one still counts as applied and goes into the
// set's history, so a restore of any moment gives the folder the mtime it had.

import type { WireRecord } from "../../contract/wire.ts";

/**
 * Records that neither read nor remove a folder object and cannot stop the
 * message part way (a delta finds its base missing: the checkpoint would then
 * cover a folder write that was left to a later one), so a folder write before
 * them may be left to a later one.
 */
function leavesFolders(record: WireRecord): boolean {
  if (record.op === "put") return record.delta === undefined;
  return record.op === "symlink" || record.op === "block" || record.op === "skip";
}

/**
 * Seqs of mkdir records whose write a later mkdir of the same path in the
 * same records replaces, with nothing between them that could see the folder
 * object (a delete, rename, marker, verification, prune, resync or drill) or
 * end the message early (a delta).
 */
export function supersededFolderWrites(records: readonly WireRecord[]): Set<number> {
  const superseded = new Set<number>();
  /** Folders set since the last record that could see them: path -> seq of the write. */
  let pending = new Map<string, number>();
  for (const record of records) {
    if (record.op === "mkdir") {
      const before = pending.get(record.path);
      if (before !== undefined) superseded.add(before);
      pending.set(record.path, record.seq);
    } else if (!leavesFolders(record)) pending = new Map();
  }
  return superseded;
}
