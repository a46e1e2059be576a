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
