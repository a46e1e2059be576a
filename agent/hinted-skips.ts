// An entry the watcher reports that cannot be replicated (a name the target
// cannot carry, a socket, FIFO or device) is named as skipped when it is
// captured, as a scan names it: otherwise `tidemark status` said "in sync"
// about a set holding one until the next full scan (rescanSeconds, 15 minutes).

import { lstat } from "node:fs/promises";
import { join } from "node:path";
import type { Journal } from "./journal.ts";
import type { SetSpec } from "./set-spec.ts";
import { specialFileProblem, unreplicableName } from "./skipped-names.ts";

/** Names the hinted path as skipped when its name cannot be replicated; true when it was (nothing else is done with it). */
export function skippedForName(journal: Journal, spec: SetSpec, path: string): boolean {
  const reason = unreplicableName(spec.root, path);
  if (reason === undefined) return false;
  journal.skippedNames.record(spec.name, path, [{ path, reason }], false);
  return true;
}

/** After a capture that journaled nothing: names the path as skipped when it is a socket, FIFO or device. */
export async function noteSpecialFile(journal: Journal, spec: SetSpec, path: string): Promise<void> {
  const stat = await lstat(join(spec.root, path), { bigint: true }).catch(() => undefined);
  const reason = specialFileProblem(stat);
  if (reason !== undefined) journal.skippedNames.record(spec.name, path, [{ path, reason }], false);
}
