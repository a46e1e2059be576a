// What one applier instance remembers of a set's live mirror between
// messages, so that history on an unversioned bucket does not HEAD what it
// already knows before preserving it: the content hash at each data key it
// wrote or looked at, and the hashes already under preserved/. Trusted only
// while nobody else applied to the set since this instance last finished a
// message of it (Lambda moves a message group between instances), and
// bounded: when it grows too large it starts over, and a key it does not know
// costs a HEAD, as on a cold instance.

import type { SetStatus } from "../../contract/layout.ts";
import type { SnapshotEntry } from "../../contract/tasks.ts";
import type { TargetStore } from "../store/store.ts";

/** Keys (and preserved hashes) remembered per set before its memory starts over. */
const KEYS_PER_SET = 100_000;
/** Sets remembered at once; the one opened longest ago is forgotten first. */
const SETS_REMEMBERED = 8;

/** What the status says about who applied last: any message applied elsewhere moves one of these. */
function stampOf(status: SetStatus): string {
  const cursor = status.history;
  return `${status.lastSeq}/${cursor?.segment ?? "-"}/${cursor?.sweptAt ?? "-"}`;
}

/** One set's live content as this instance knows it. */
export class LiveContent {
  /** Data key → sha256 of the file there, or null when nothing there needs preserving (no object, a folder, a symlink). */
  readonly #live = new Map<string, string | null>();
  /** True while #live names every file of the set (it was seeded from a checkpoint): a key it lacks holds nothing to preserve. */
  #complete = false;
  readonly #preserved = new Set<string>();
  /** stampOf(status) when this instance last finished a message of the set; undefined while one is under way. */
  stamp: string | undefined;

  /** The sha256 of the file at key, null when nothing there needs preserving, undefined when unknown (ask the store). */
  contentAt(key: string): string | null | undefined {
    const known = this.#live.get(key);
    if (known !== undefined) return known;
    return this.#complete ? null : undefined;
  }

  /** The object at key now holds the file with this sha256 (null: nothing to preserve; undefined: unknown). */
  learn(key: string, sha256: string | null | undefined): void {
    if (sha256 === undefined) {
      this.#live.delete(key);
      // A complete map would read the missing key as "nothing there".
      this.#complete = false;
      return;
    }
    if (sha256 === null && this.#complete) this.#live.delete(key);
    else this.#live.set(key, sha256);
    if (this.#live.size > KEYS_PER_SET) {
      this.#live.clear();
      this.#complete = false;
    }
  }

  /** The file entries of a checkpoint of the whole live mirror (dataKey of each path): from now on an unnamed key holds nothing to preserve. */
  seed(entries: readonly SnapshotEntry[], keyOf: (path: string) => string): void {
    this.#live.clear();
    const files = entries.filter((e) => e.kind === "file" && e.sha256 !== undefined);
    this.#complete = files.length <= KEYS_PER_SET;
    if (!this.#complete) return;
    for (const entry of files) this.#live.set(keyOf(entry.path), entry.sha256 ?? null);
  }

  isPreserved(sha256: string): boolean {
    return this.#preserved.has(sha256);
  }

  preserved(sha256: string): void {
    if (this.#preserved.size >= KEYS_PER_SET) this.#preserved.clear();
    this.#preserved.add(sha256);
  }

  /** Retention may have deleted preserved content: what was known to be there no longer is. */
  forgetPreserved(): void {
    this.#preserved.clear();
  }
}

/** What one applier instance keeps between messages for the history: whether the bucket keeps versions, and each set's LiveContent. */
export class HistoryMemory {
  #versioned: Promise<boolean> | undefined;
  readonly #sets = new Map<string, LiveContent>();

  /** Whether the store keeps replaced versions, asked once per instance. */
  versioned(store: TargetStore): Promise<boolean> {
    this.#versioned ??= store.versioned().catch((error: unknown) => {
      this.#versioned = undefined;
      throw error;
    });
    return this.#versioned;
  }

  /**
   * The set's live content at the start of a message: what this instance
   * remembers when the status shows that its own last message of the set was
   * the last one applied, else nothing. Stays untrusted until finished().
   */
  open(set: string, status: SetStatus): LiveContent {
    let memory = this.#sets.get(set);
    this.#sets.delete(set);
    if (!memory || memory.stamp === undefined || memory.stamp !== stampOf(status)) memory = new LiveContent();
    memory.stamp = undefined;
    this.#sets.set(set, memory);
    for (const oldest of this.#sets.keys()) {
      if (this.#sets.size <= SETS_REMEMBERED) break;
      this.#sets.delete(oldest);
    }
    return memory;
  }

  /** The message ended with this status (about to be written): the next message may trust the memory if the status read then is this one. */
  finished(memory: LiveContent, status: SetStatus): void {
    memory.stamp = stampOf(status);
  }
}
