// An entry the watcher reports that cannot be replicated (a name the target
// cannot carry, a socket, FIFO or device) is named as skipped when it is
// captured, as a scan names it: otherwise `tidemark status` said "in sync"
// about a set holding one until the next full scan (rescanSeconds, 15 minutes).

import { lstat } from "node:fs/promises";
import { join } from "node:path";
import type { Journal } from "./journal.ts";
import type { SetSpec } from "./set-spec.ts";
import { setPathProblem } from "../contract/paths.ts";
import { exists, NOT_UTF8, nonUtf8EntryExists, specialFileProblem } from "./skipped-names.ts";

/**
 * Names the hinted path as skipped when its name cannot be replicated; true when it was (nothing else is done with
 * it). A hint also comes for a delete or a rename's source: a name holding U+FFFD that is no longer on the disk is
 * either a file whose (valid UTF-8) name holds that character, whose delete capture journals, or a name that was not
 * UTF-8 and is gone, which leaves the skipped list.
 */
export function skippedForName(journal: Journal, spec: SetSpec, path: string): boolean {
  const reason = setPathProblem(path) ?? (nonUtf8EntryExists(spec.root, path) ? NOT_UTF8 : undefined);
  if (reason === undefined) {
    if (path.includes("\uFFFD") && !exists(join(spec.root, path))) journal.skippedNames.gone(spec.name, path);
    return false;
  }
  journal.skippedNames.record(spec.name, path, [{ path, reason }], false);
  return true;
}

/** After a capture that journaled nothing or only a delete (a file replaced by a FIFO): names the path as skipped when it is a socket, FIFO or device. */
export async function noteSpecialFile(journal: Journal, spec: SetSpec, path: string): Promise<void> {
  const stat = await lstat(join(spec.root, path), { bigint: true }).catch(() => undefined);
  const reason = specialFileProblem(stat);
  if (reason !== undefined) journal.skippedNames.record(spec.name, path, [{ path, reason }], false);
}
