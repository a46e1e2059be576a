// Re-applying a rename. A message whose checkpoint was not written (the
// invocation died after applying it) is applied again from the checkpoint
// before it; a rename applied the first time finds its source gone, or
// re-created by a later record of the message. The rename marks what it moved
// with its own seq, so applying it again recognises its own work instead of
// calling the target diverged or moving the wrong content.

import type { TargetStore, WriteResult } from "../store/store.ts";

/** Object metadata naming the rename that moved the object there: "<journal generation>:<seq>". */
export const RENAMED_BY = "tidemark-renamed-by";

/** The mark of the rename at seq of a set in journal generation `generation`. */
export function renameMark(generation: string | undefined, seq: number): string {
  return `${generation ?? ""}:${seq}`;
}

/**
 * When the object at key is what this very rename moved there (the rename
 * was applied before), what that copy wrote: the history names its version.
 * Undefined when the rename was not applied before.
 */
export async function renamedBefore(store: TargetStore, key: string, mark: string): Promise<WriteResult | undefined> {
  const head = await store.head(key);
  if (head?.meta[RENAMED_BY] !== mark) return undefined;
  return head.versionId !== undefined ? { versionId: head.versionId } : {};
}
