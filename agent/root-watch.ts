// The agent's look at a tree set's root, at start and every few seconds
// (set-roots.ts says what is good): a good root's identity is recorded (also
// for a journal made before roots, or their birth times, were, on its first
// good check), a bad one holds the set, and a held set whose root is back (a
// remount, a folder moved back, or `tidemark accept-root` from another
// process) resumes.

import type { RootHold } from "./set-roots.ts";
import type { SetContext } from "./set-context.ts";

/** How often a running agent looks at each set's root. */
export const ROOT_CHECK_MS = 3_000;

export class RootWatch {
  readonly #context: Pick<SetContext, "spec" | "journal" | "log">;
  readonly #onResumed: () => void;
  /** The hold this process last saw: a root good again after it resumes the set. */
  #held: RootHold | undefined;

  constructor(context: Pick<SetContext, "spec" | "journal" | "log">, onResumed: () => void) {
    this.#context = context;
    this.#onResumed = onResumed;
  }

  /** The set's hold as this process last saw it. */
  get hold(): RootHold | undefined {
    return this.#held;
  }

  /** Looks at the root now: holds the set (undefined when not held), records a good root, resumes a set held before. */
  check(): RootHold | undefined {
    const { spec, journal, log } = this.#context;
    if (spec.volume) return undefined;
    const set = spec.name;
    const known = journal.roots.of(set);
    const verdict = journal.roots.inspect(set, spec.root, { deleting: true });
    if (!verdict.ok) {
      const hold = journal.atomically(() => journal.roots.hold(set, spec.root, verdict));
      if (this.#held?.state !== hold.state) {
        log.error(`set held (${hold.state}): nothing of it is journaled until its root is back or accepted`, { set, root: spec.root, expected: hold.expected, found: hold.found });
      }
      this.#held = hold;
      return hold;
    }
    // A root held empty stays held until what the journal knows is back, or an operator accepts it (accept-root).
    if (known?.hold && !this.#releasable(known.hold)) {
      this.#held = known.hold;
      return known.hold;
    }
    const moved = known !== undefined && known.root !== spec.root;
    if (!known?.identity || verdict.renumbered || verdict.birthLearned || moved || known.hold) {
      if (verdict.renumbered) log.warn("the set's root has another device number but the same inode, and its birth time or most of its entries: recorded again", { set, root: spec.root, dev: verdict.identity.dev });
      journal.atomically(() => journal.roots.record(set, spec.root, verdict.identity, known?.accepted === true));
    }
    const was = this.#held ?? known?.hold;
    this.#held = undefined;
    if (was) {
      log.info("the set's root is back: resuming with a scan", { set, root: spec.root, was: was.state, since: was.since });
      this.#onResumed();
    }
    return undefined;
  }

  /** Whether a hold may end now that its root checks out (a root-empty one only once known entries are back: set-roots.ts). */
  #releasable(hold: RootHold): boolean {
    if (hold.state !== "root-empty") return true;
    const { spec, journal } = this.#context;
    return journal.roots.emptyRootRefilled(spec.name, spec.root);
  }
}
