// What a set holds and does not replicate, as `tidemark status` names it:
// paths whose latest change the target refused for good, and entries the
// target cannot carry (skipped-names.ts). `tidemark verify` names them too:
// its manifest leaves them out, so "0 missing" would otherwise hide them.

import type { Journal } from "./journal.ts";
import type { NotReplicated } from "./set-health.ts";
import type { SetSpec } from "./set-spec.ts";
import { skippedNow } from "./skipped-names.ts";

export function notReplicated(journal: Journal, spec: SetSpec): NotReplicated[] {
  const refused = journal.skipped(spec.name).map(({ path, reason, since }) => ({ path, reason, since }));
  const skipped = skippedNow(journal.skippedNames, spec.name, spec.root).map(({ path, reason }) => ({ path, reason }));
  return [...refused, ...skipped];
}

/**
 * What a marker's snapshot will lack, as the marker carries it (sorted by path): the entries whose names the target
 * cannot carry, each with why. Changes the target refused for good are left out: such a record is named by status
 * until a later change of the path is sent (the barrier may send one right ahead of the marker), and it names
 * refused markers too, so it cannot say what the source holds at the marker.
 */
export function markerNotReplicated(journal: Journal, spec: SetSpec): { path: string; problem: string }[] {
  if (spec.volume) return [];
  const entries = skippedNow(journal.skippedNames, spec.name, spec.root).map(({ path, reason }) => ({ path, problem: `it is not replicated (${reason})` }));
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
