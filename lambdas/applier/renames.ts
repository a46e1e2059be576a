// Re-applying a rename. A message whose checkpoint was not written (the
// invocation died after applying it) is applied again from the checkpoint
// before it; a rename applied the first time finds its source gone, or
// re-created by a later record of the message. The rename marks what it moved
// with its own seq and source, so applying it again recognises its own work
// instead of calling the target diverged or moving the wrong content. The seq
// alone cannot tell: a message partly applied that never completed leaves
// marks above the checkpoint, and the same seqs may come again with other
// records (a journal restored from an older copy, a hostile owner); another
// rename to the same destination at that seq must not delete its source.

import { createHash } from "node:crypto";
import { META } from "../../contract/layout.ts";
import type { ObjectHead, TargetStore, WriteResult } from "../store/store.ts";

/** Object metadata naming the rename that moved the object there: "<journal generation>:<seq>:<source tag>". */
export const RENAMED_BY = "tidemark-renamed-by";

/** "<journal generation>:<seq>": the record at seq of a set in journal generation `generation`. */
export function renameMark(generation: string | undefined, seq: number): string {
  return `${generation ?? ""}:${seq}`;
}

/** The source a rename moved, short enough for S3's 2 KB of metadata (a path may be longer): 64 bits of its SHA-256. */
function sourceTag(from: string): string {
  return createHash("sha256").update(from, "utf8").digest("hex").slice(0, 16);
}

/** The mark the rename at seq of generation `generation`, moving `from`, leaves on what it moved (RENAMED_BY). */
export function movedMark(generation: string | undefined, record: { readonly seq: number; readonly from: string }): string {
  return `${renameMark(generation, record.seq)}:${sourceTag(record.from)}`;
}

/** What the rename's copy keeps of the source: the entry itself (not the snapshot generation, which the copy sets anew). */
const ENTRY_KEYS = [META.kind, META.mode, META.mtimeNs, META.sha256, META.linkTarget, META.linkInBody, META.linkGroup] as const;

/**
 * Whether the copy at head holds the entry source is. A symlink's target kept in the source's metadata may have
 * given way to the in-body flag in the copy (withinMetadataLimit); the body, same size and sha256, holds the target.
 */
function sameEntry(source: ObjectHead, head: ObjectHead): boolean {
  if (source.size !== head.size) return false;
  const movedToBody = source.meta[META.linkTarget] !== undefined && head.meta[META.linkTarget] === undefined && head.meta[META.linkInBody] === "1";
  const compared = movedToBody ? ENTRY_KEYS.filter((name) => name !== META.linkTarget && name !== META.linkInBody) : ENTRY_KEYS;
  return compared.every((name) => source.meta[name] === head.meta[name]);
}

/**
 * When the object at key is what this very rename (at record.seq of
 * `generation`, moving record.from) moved there (the rename was applied
 * before), what that copy wrote: the history names its version. Undefined
 * when the rename was not applied before: the object carries another mark,
 * or the source is still there (`source`, its head) and is not what the
 * object holds. A mark written before marks named their source
 * ("<generation>:<seq>") is judged by its seq and that content alone.
 */
export async function renamedBefore(
  store: TargetStore,
  key: string,
  generation: string | undefined,
  record: { readonly seq: number; readonly from: string },
  source: ObjectHead | undefined,
): Promise<WriteResult | undefined> {
  const head = await store.head(key);
  const mark = head?.meta[RENAMED_BY];
  if (!head || (mark !== movedMark(generation, record) && mark !== renameMark(generation, record.seq))) return undefined;
  // Copied, its source not yet removed: the source is exactly what the copy holds.
  if (source && !sameEntry(source, head)) return undefined;
  return head.versionId !== undefined ? { versionId: head.versionId } : {};
}
