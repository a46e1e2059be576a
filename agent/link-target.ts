// A symlink's target as the agent reads it. Linux allows any bytes but NUL in
// a target; tidemark carries targets as UTF-8 text (the journal, the wire, the
// target's objects), so one that is not UTF-8 would arrive altered (U+FFFD in
// place of its bytes) and restore as another link. Such a link is not
// replicated but named in status, as an entry the agent may not read is (its
// last good version stays on the target).

import { isUtf8 } from "node:buffer";
import { readlink } from "node:fs/promises";

/** Why such a link is not replicated. */
export const LINK_TARGET_NOT_UTF8 = "its link target is not valid UTF-8 (tidemark carries link targets as UTF-8 text)";

export class LinkTargetNotUtf8Error extends Error {
  override name = "LinkTargetNotUtf8Error";
  /** As an errno (EILSEQ: illegal byte sequence): a scan names the link and goes on, as for an entry it may not read. */
  readonly code = "EILSEQ";
  constructor() {
    super(LINK_TARGET_NOT_UTF8);
  }
}

/** The target of the symlink at abs, exactly; throws LinkTargetNotUtf8Error when its bytes are not UTF-8. */
export async function readLinkTarget(abs: string): Promise<string> {
  const bytes = await readlink(abs, { encoding: "buffer" });
  if (!isUtf8(bytes)) throw new LinkTargetNotUtf8Error();
  return bytes.toString("utf8");
}
