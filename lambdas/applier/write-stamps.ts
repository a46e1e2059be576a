// The record that wrote a live object: every regular file the applier writes
// for a record (a put, a delta, a rename) carries "<journal generation>:<seq>"
// in its metadata, set in the same write (a symlink's needs none: a delta is
// checkpointed before a later record other than a put touches its file,
// reapply.ts). A message applied again from its
// checkpoint (redelivered after a kill) may find a delta's base gone because
// it, or a later record of the message, changed the file already: the stamp
// tells. Records apply in seq order, so an object stamped by this record, or
// by a later record of its message that writes the same file, and holding
// what that record gives it, was written after this record reached the
// store; anything else means the delta was never applied and its base is
// simply not there. The stamp's seq alone cannot tell: a message partly
// applied that never completed leaves stamps above the checkpoint, and the
// same seqs may come again with other records (a journal restored from an
// older copy, a hostile owner). The content alone
// cannot tell: a stale target (a difference mirror made against what the
// agent believed the target held) can hold what a later put gives the file,
// and a delta taken for applied would record a moment the target never held.

import { META } from "../../contract/layout.ts";
import { movedMark, RENAMED_BY, renameMark } from "./renames.ts";

/** Object metadata naming the record that wrote the object: "<journal generation>:<seq>". */
export const WRITTEN_BY = "tidemark-written-by";

/** The metadata that stamps an object as written by the record at seq of journal generation `generation`. */
export function writeStamp(generation: string | undefined, seq: number): Record<string, string> {
  return { [WRITTEN_BY]: renameMark(generation, seq) };
}

/** The record a stamp names: its journal generation ("" before generations) and seq. */
interface Stamp {
  readonly generation: string;
  readonly seq: number;
}

/** The record the object's stamp names, or undefined when it carries none the applier writes (written before stamps, or by hand). */
function readStamp(meta: Readonly<Record<string, string>>): Stamp | undefined {
  // A generation id is letters and digits (none before generations); a seq is what the wire accepts (contract/manifest-entry.ts Seq).
  const stamp = /^([A-Za-z0-9]*):([1-9]\d{0,15})$/.exec(meta[WRITTEN_BY] ?? "");
  const seq = Number(stamp?.[2]);
  if (!stamp || !Number.isSafeInteger(seq)) return undefined;
  return { generation: stamp[1] ?? "", seq };
}

/**
 * The metadata a rename sets on what it moves: its mark (renames.ts), and the
 * stamp of a regular file. A symlink carries none (a delta reads no
 * symlink's stamp), and a long link target fills most of S3's 2 KB of
 * metadata already.
 */
export function renameStamps(
  generation: string | undefined,
  record: { readonly seq: number; readonly from: string },
  meta: Readonly<Record<string, string>>,
): Record<string, string> {
  return { [RENAMED_BY]: movedMark(generation, record), ...(meta[META.kind] === "file" ? writeStamp(generation, record.seq) : {}) };
}

/**
 * What an object's stamp says about a record (a delta) at seq of generation `generation`, whose result is `sha256`:
 * - "unstamped": written before stamps (or by hand): the stamp cannot tell;
 * - "applied": written by this record (and holding its result), or by a later record of its message that writes
 *   the same file (`later`: seq -> the SHA-256 it gives the file) and holding that record's result;
 * - "not applied": anything else: an earlier record, another generation, or a record of the same generation and
 *   seq that wrote other content (a message partly applied that never completed, whose seqs came again with
 *   other records: a journal restored from an older copy, or a hostile owner).
 */
export type StampVerdict = "unstamped" | "applied" | "not applied";

export function judgeStamp(
  meta: Readonly<Record<string, string>>,
  generation: string | undefined,
  record: { readonly seq: number; readonly sha256: string },
  later: ReadonlyMap<number, string>,
): StampVerdict {
  const stamp = readStamp(meta);
  if (!stamp) return "unstamped";
  if (stamp.generation !== (generation ?? "")) return "not applied";
  const held = meta[META.sha256];
  const expected = stamp.seq === record.seq ? record.sha256 : later.get(stamp.seq);
  return held !== undefined && held === expected ? "applied" : "not applied";
}

/** True when the object's metadata names exactly the record whose stamp is `stamp` (writeStamp) as its writer. */
export function writtenBy(meta: Readonly<Record<string, string>>, stamp: Readonly<Record<string, string>>): boolean {
  const writer = meta[WRITTEN_BY];
  return writer !== undefined && writer === stamp[WRITTEN_BY];
}
