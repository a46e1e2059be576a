// The record that wrote a live object: every file the applier writes for a
// record (a put, a delta, a rename) carries "<journal generation>:<seq>" in
// its metadata, set in the same write (a symlink's needs none: a delta is
// checkpointed before a later record other than a put touches its file,
// reapply.ts). A message applied again from its
// checkpoint (redelivered after a kill) may find a delta's base gone because
// it, or a later record of the message, changed the file already: the stamp
// tells. Records apply in seq order, so an object stamped by this record or a
// later one of the same generation was written after this record reached the
// store; anything else (an earlier record, another generation) means the
// delta was never applied and its base is simply not there. The content alone
// cannot tell: a stale target (a difference mirror made against what the
// agent believed the target held) can hold what a later put gives the file,
// and a delta taken for applied would record a moment the target never held.

import { renameMark } from "./renames.ts";

/** Object metadata naming the record that wrote the object: "<journal generation>:<seq>" (a rename's mark has the same form). */
export const WRITTEN_BY = "tidemark-written-by";

/** The metadata that stamps an object as written by the record at seq of journal generation `generation`. */
export function writeStamp(generation: string | undefined, seq: number): Record<string, string> {
  return { [WRITTEN_BY]: renameMark(generation, seq) };
}

/**
 * What an object's stamp says about the record at seq of generation `generation`:
 * - "unstamped": written before stamps (or by hand): the stamp cannot tell;
 * - "applied": written by this record or a later one of its generation: the record reached the store before;
 * - "not applied": written by an earlier record or another generation.
 */
export type StampVerdict = "unstamped" | "applied" | "not applied";

export function judgeStamp(meta: Readonly<Record<string, string>>, generation: string | undefined, seq: number): StampVerdict {
  // A generation id is letters and digits (none before generations); anything else was not written by the applier.
  const stamp = /^([A-Za-z0-9]*):(\d{1,15})$/.exec(meta[WRITTEN_BY] ?? "");
  if (!stamp) return "unstamped";
  return stamp[1] === (generation ?? "") && Number(stamp[2]) >= seq ? "applied" : "not applied";
}

/** True when the object's metadata names exactly the record whose stamp is `stamp` (writeStamp) as its writer. */
export function writtenBy(meta: Readonly<Record<string, string>>, stamp: Readonly<Record<string, string>>): boolean {
  const writer = meta[WRITTEN_BY];
  return writer !== undefined && writer === stamp[WRITTEN_BY];
}
