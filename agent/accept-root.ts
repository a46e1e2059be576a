// An operator's acceptance of the folder at a set's root as the set from now
// on (a new disk, a restored copy, a folder emptied on purpose): its identity
// is recorded and the hold ends; the agent's next scan journals the real
// differences, deletes included (set-roots.ts).

import type { Journal } from "./journal.ts";
import { answerWithin, RootUnansweredError, type RootWatchOptions } from "./root-watch.ts";
import { identityOf, type RootHold, type RootIdentity } from "./set-roots.ts";
import type { SetSpec } from "./set-spec.ts";

/** The root cannot be accepted: it is missing, not a folder, or not readable. */
export class AcceptRootError extends Error {
  override name = "AcceptRootError";
}

export interface AcceptedRoot {
  readonly identity: RootIdentity;
  /** The hold the acceptance ended, if the set was held. */
  readonly previous?: RootHold;
}

/**
 * Records the folder now at the set's root as the set's, ending any hold; the next scan journals what differs. The
 * root is looked at through the journal's root look, each look within the time limit: a root that does not answer
 * (a hung network file system) is refused, nothing recorded.
 */
export async function acceptRoot(journal: Journal, spec: SetSpec, options: RootWatchOptions = {}): Promise<AcceptedRoot> {
  if (spec.volume) throw new AcceptRootError(`set "${spec.name}" is a volume: accept-root is for folder sets`);
  const look = journal.roots.look;
  let identity: RootIdentity;
  try {
    const st = await answerWithin(look.stat(spec.root), spec.root, options);
    if (!st.isDirectory()) throw new AcceptRootError(`set "${spec.name}": ${spec.root} is not a directory; put the set's folder there first`);
    // Readable, or the agent could not scan what is accepted.
    await answerWithin(look.isEmpty(spec.root), spec.root, options);
    identity = identityOf(st, await answerWithin(look.realpath(spec.root), spec.root, options));
  } catch (error) {
    if (error instanceof AcceptRootError) throw error;
    if (error instanceof RootUnansweredError) {
      throw new AcceptRootError(`set "${spec.name}": cannot accept: ${error.message}; nothing was recorded: accept it once it answers (\`tidemark status\` shows what the agent knows)`);
    }
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new AcceptRootError(`set "${spec.name}": cannot accept ${spec.root} (${code}): ${code === "ENOENT" ? "nothing is there; mount the disk or put the folder back first" : "the agent's user must be able to read it"}`);
  }
  const previous = journal.roots.held(spec.name);
  journal.atomically(() => journal.roots.record(spec.name, spec.root, identity, true));
  return { identity, ...(previous ? { previous } : {}) };
}
