// What one applier instance remembers of a set's live mirror between
// messages, so that history on an unversioned bucket does not HEAD what it
// already knows before preserving it: the content hash at each data key it
// wrote or looked at (with the object's ETag where a write or HEAD told it),
// and the hashes under preserved/ (all of them, once it listed them and
// copied every one since). Trusted only while nobody else finished a message
// of the set since this instance last did (Lambda moves a message group
// between instances; one that died mid-message moves nothing, which the ETag
// a copy is conditional on catches, preserved-content.ts), and
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
  /** Data key → the ETag of the object whose hash #live names, where a write's answer or a HEAD told it: a copy from there is made only of that object. */
  readonly #etags = new Map<string, string>();
  /** ETags told (tagged) and not yet learned with their hash. */
  readonly #tagged = new Map<string, string>();
  /** True while #live names every file of the set (it was seeded from a checkpoint): a key it lacks holds nothing to preserve. */
  #complete = false;
  readonly #preserved = new Set<string>();
  /** True while #preserved names every object under the set's preserved/ (listed, then kept up by this instance's copies). */
  #preservedComplete = false;
  /** Copies to preserved/ under way, by hash: a second file with the same content waits for the first. */
  readonly #copying = new Map<string, Promise<void>>();
  /** stampOf(status) when this instance last finished a message of the set; undefined while one is under way. */
  stamp: string | undefined;

  /** The sha256 of the file at key, null when nothing there needs preserving, undefined when unknown (ask the store). */
  contentAt(key: string): string | null | undefined {
    const known = this.#live.get(key);
    if (known !== undefined) return known;
    return this.#complete ? null : undefined;
  }

  /** The ETag of the object at key, when this instance knows it. */
  etagAt(key: string): string | undefined {
    return this.#etags.get(key);
  }

  /** The object at key now has this ETag (a write's answer, a HEAD's): it goes with the hash learned next for key. */
  tagged(key: string, etag: string | undefined): void {
    if (etag !== undefined) this.#tagged.set(key, etag);
    else this.#tagged.delete(key);
  }

  /** The object at key now holds the file with this sha256 (null: nothing to preserve; undefined: unknown). */
  learn(key: string, sha256: string | null | undefined): void {
    const etag = this.#tagged.get(key);
    this.#tagged.delete(key);
    if (etag !== undefined && typeof sha256 === "string") this.#etags.set(key, etag);
    else this.#etags.delete(key);
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
    if (this.#etags.size > KEYS_PER_SET) this.#etags.clear();
  }

  /** The file entries of a checkpoint of the whole live mirror (dataKey of each path): from now on an unnamed key holds nothing to preserve. */
  seed(entries: readonly SnapshotEntry[], keyOf: (path: string) => string): void {
    const before = new Map(this.#live);
    this.#live.clear();
    this.#tagged.clear();
    const files = entries.filter((e) => e.kind === "file" && e.sha256 !== undefined);
    this.#complete = files.length <= KEYS_PER_SET;
    if (this.#complete) for (const entry of files) this.#live.set(keyOf(entry.path), entry.sha256 ?? null);
    // An ETag goes with the hash it was learned with: where the checkpoint names another (or none), the pairing is
    // gone, and a copy made on the strength of it would put that object's bytes under the wrong hash in preserved/.
    for (const key of [...this.#etags.keys()]) {
      const hash = this.#live.get(key);
      if (hash === undefined || hash !== before.get(key)) this.#etags.delete(key);
    }
  }

  /** True: preserved/<sha256> is there; false: it is not (every preserved hash is known); undefined: unknown (ask the store). */
  preservedKnown(sha256: string): boolean | undefined {
    if (this.#preserved.has(sha256)) return true;
    return this.#preservedComplete ? false : undefined;
  }

  preserved(sha256: string): void {
    if (this.#preserved.size >= KEYS_PER_SET) {
      this.#preserved.clear();
      this.#preservedComplete = false;
    }
    this.#preserved.add(sha256);
  }

  /**
   * The hashes a listing of the set's preserved/ found, all of them (undefined:
   * too many to remember): what was known before no longer counts, since
   * retention may have deleted some.
   */
  seedPreserved(hashes: readonly string[] | undefined): void {
    this.#preserved.clear();
    this.#preservedComplete = hashes !== undefined && hashes.length <= KEYS_PER_SET;
    if (!this.#preservedComplete || !hashes) return;
    for (const sha256 of hashes) this.#preserved.add(sha256);
  }

  /** Runs the copy of sha256 to preserved/ unless one is under way, which it waits for instead. */
  async copyOnce(sha256: string, copy: () => Promise<void>): Promise<void> {
    const running = this.#copying.get(sha256);
    if (running) return running;
    const done = copy().finally(() => this.#copying.delete(sha256));
    this.#copying.set(sha256, done);
    return done;
  }
}

/** Preserved hashes a listing remembers at most: beyond, the listing stops and the store is asked per hash. */
export const PRESERVED_LISTED = KEYS_PER_SET;

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
