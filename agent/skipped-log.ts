// What the agent's log says of paths it does not replicate (sockets, FIFOs,
// unreadable entries, names the target cannot carry): each once, when it is
// first found or its reason changes, not at every rescan; `tidemark status`
// lists them every time. A path found replicable again is forgotten, so it
// is logged anew if it is skipped again.

/** A path not replicated, with why. */
export interface SkippedPath {
  readonly path: string;
  readonly reason: string;
}

export class SkippedLog {
  /** Path -> the reason last logged. */
  readonly #logged = new Map<string, string>();

  /**
   * A scan of the whole set found these paths skipped: returns those to log (new, or with another reason). A scan
   * that finished (`complete`) found every other path replicable: they are forgotten.
   */
  scanned(skipped: readonly SkippedPath[], complete: boolean): SkippedPath[] {
    const fresh = skipped.filter((entry) => this.noted(entry));
    if (complete) {
      const now = new Set(skipped.map((entry) => entry.path));
      for (const path of this.#logged.keys()) if (!now.has(path)) this.#logged.delete(path);
    }
    return fresh;
  }

  /** One path found skipped (a capture that failed): true when it is to be logged. */
  noted(entry: SkippedPath): boolean {
    if (this.#logged.get(entry.path) === entry.reason) return false;
    this.#logged.set(entry.path, entry.reason);
    return true;
  }

  /** The path was captured: its next skip is a change of state, logged again. */
  captured(path: string): void {
    this.#logged.delete(path);
  }
}
