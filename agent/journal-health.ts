// What the agent does when its journal fails under it. A full disk: say so
// once, with the real error, stop capturing (every attempt would fail the
// same way, and spin), probe with growing pauses, and once a write commits
// again, resume with a catch-up scan of every set: nothing captured meanwhile
// reached the index, so the scan finds all of it. Sending what is journaled
// goes on meanwhile: it writes little (marking a message sent rewrites a few
// of the journal's pages, which a WAL already as large reuses) and frees the
// spooled content of what it sent, often what filled the disk; sending had
// stopped too and the agent's own backlog kept the disk full until an
// operator freed space. Should a send itself find no space (marking it sent
// failed), sending pauses too until the free space grows, and status says how
// much to free. So that a disk filled to its last bytes still takes those
// marks, a space ballast (space-ballast.ts) is deleted at the first full-disk
// failure and made again once there is room. A corrupt journal: hand it to the
// agent's owner, who stops the process.

import { existsSync, lstatSync, type Stats } from "node:fs";
import { dirname, join } from "node:path";
import { freeBytes, isCorrupt, isDiskFull, journalFault, JournalCorruptError } from "./journal-faults.ts";
import type { Journal } from "./journal.ts";
import type { Logger } from "./log.ts";
import type { AgentProblem } from "./problem-file.ts";
import { BALLAST_FILE, SpaceBallast } from "./space-ballast.ts";

export interface JournalHealthOptions {
  readonly journal: Journal;
  readonly log: Logger;
  /** Probes on a timer while the disk is full; off in tests, which call probe(). */
  readonly monitorEnabled: boolean;
  /** Once a write commits again: catch-up scans. */
  readonly onResumed: () => Promise<void>;
  /** The journal is corrupt: the agent cannot go on. */
  readonly onCorrupt: (error: JournalCorruptError) => void;
  /** The current problem (null once resolved), for `tidemark status`. */
  readonly onProblem?: (problem: AgentProblem | null) => void;
  /** @default 1 s, doubling to 30 s */
  readonly firstProbeMs?: number;
  readonly maxProbeMs?: number;
  /**
   * Free space needed before journaling resumes: a small write may fit in the
   * WAL's old pages on a disk still full, and a catch-up scan would fail again. @default 4 MiB
   */
  readonly resumeFreeBytes?: number;
  /**
   * The space ballast kept in the state folder, deleted when the disk fills so that marking messages sent (and status)
   * can go on; 0: none. Made at start and once journaling resumed and its catch-up scan journaled, when the disk has room for it and resumeFreeBytes more. @default 2 MiB
   */
  readonly ballastBytes?: number;
}

/** A disk that fills again this soon after journaling resumed keeps its slow probing pace. */
const REFILL_WINDOW_MS = 60_000;

const DEFAULT_RESUME_FREE_BYTES = 4 * 1024 * 1024;
const MIB = 1024 * 1024;
const DEFAULT_BALLAST_BYTES = 2 * MIB;

const mib = (bytes: number) => `${(bytes / MIB).toFixed(1)} MiB`;

/** The problem's words for a deleted ballast: when, and the bytes that freed as measured (a snapshot may keep them all). */
function ballastFreedText(ballast: SpaceBallast, freed: { readonly at: string; readonly freed: number | undefined; readonly free: number | undefined }): string {
  const size = `${Math.ceil(ballast.bytes / MIB)} MiB`;
  const what =
    freed.freed === undefined
      ? "what that freed is not known"
      : freed.freed < ballast.bytes / 2
        ? `that freed ${freed.freed === 0 ? "nothing" : mib(freed.freed)} (a filesystem with snapshots, or another link to the file, keeps its blocks)`
        : `that freed ${mib(freed.freed)}`;
  const free = freed.free === undefined ? "" : `, free space now ${mib(freed.free)}`;
  return `deleted the ${size} space ballast (${ballast.path}) at ${freed.at} so that sent messages can still be marked: ${what}${free}; it is made again once there is space`;
}

/**
 * For `tidemark status` and `doctor`: why the state folder holds no space ballast (null when it does, or when no agent
 * ran there yet). Not a problem: replication goes on; a disk filled to its last byte would pause sending.
 */
export function spaceBallastNote(stateDir: string): string | null {
  if (!existsSync(join(stateDir, "journal.db"))) return null;
  const path = join(stateDir, BALLAST_FILE);
  const need = DEFAULT_RESUME_FREE_BYTES + DEFAULT_BALLAST_BYTES;
  let found: Stats;
  try {
    found = lstatSync(path);
  } catch {
    const free = freeBytes(path);
    const now = free === undefined ? "" : ` (${mib(free)} free now${free >= need ? ": an agent running makes it within a minute, or its log says why not" : ""})`;
    return `space ballast missing (${path}): a disk filled to its last byte would pause sending; the agent makes it when ${mib(need)} are free in ${stateDir}${now}`;
  }
  if (found.isFile() && found.size >= DEFAULT_BALLAST_BYTES) return null;
  if (found.isDirectory()) return `${path} is a directory, not the space ballast: remove it so that the agent can make it`;
  if (!found.isFile()) return `${path} is not a regular file (a link?), not the space ballast: the agent removes it, following nothing, and makes it`;
  return `space ballast short (${path}, ${found.size} bytes of ${DEFAULT_BALLAST_BYTES}): the agent makes it again`;
}

export class JournalHealth {
  readonly #options: JournalHealthOptions;
  #problem: AgentProblem | null = null;
  #timer: NodeJS.Timeout | undefined;
  #nextProbeMs = 1_000;
  #corrupt: JournalCorruptError | undefined;
  #resumedAt = Number.NEGATIVE_INFINITY;
  /** The full disk's error, as the problem names it. */
  #fault = "";
  /** Set while sends are paused: a send found no space; the free bytes then (undefined: not readable). */
  #sendsPaused: { readonly free: number | undefined } | undefined;
  readonly #ballast: SpaceBallast | undefined;
  /** When the ballast was deleted for a full disk (ISO 8601), what that freed and the free space then, until it is made again. */
  #ballastFreed: { readonly at: string; readonly freed: number | undefined; readonly free: number | undefined } | undefined;
  #ballastTimer: NodeJS.Timeout | undefined;
  /** Why the ballast was last not made, as logged. */
  #ballastWhy: string | undefined;

  constructor(options: JournalHealthOptions) {
    this.#options = options;
    const ballastBytes = options.ballastBytes ?? DEFAULT_BALLAST_BYTES;
    this.#ballast = ballastBytes > 0 ? new SpaceBallast(join(dirname(options.journal.path), BALLAST_FILE), ballastBytes) : undefined;
    this.#keepBallast();
  }

  /** The disk holding the journal is full: nothing is captured until a probe succeeds (what is journaled is still sent: see sending). */
  get full(): boolean {
    return this.#problem !== null;
  }

  /**
   * Whether the sender may send: always while the disk has space, and while journaling is paused too (sending frees
   * the spooled content of what it sent), unless a send found no space itself: then once the free space has grown.
   */
  get sending(): boolean {
    const paused = this.#sendsPaused;
    if (this.#problem === null || paused === undefined) return true;
    const free = freeBytes(this.#options.journal.path);
    if (free === undefined || paused.free === undefined || free <= paused.free) return false;
    this.#sendsPaused = undefined;
    this.#options.log.info("space freed on the journal's disk: sending what is journaled again", { freeBytes: free });
    this.#setProblem();
    return true;
  }

  /**
   * Takes a failure of a send: as handle(); when it was a full disk (marking the message sent found no space),
   * sending pauses too until the free space grows (the message goes again then, as after any send not marked).
   */
  handleSend(error: unknown): boolean {
    const ballastHeld = this.#ballast?.held === true;
    if (!this.handle(error)) return false;
    // The ballast this failure deleted is room for the marks: the message goes again at once.
    if (!isDiskFull(error) || this.#sendsPaused !== undefined || ballastHeld) return true;
    this.#sendsPaused = { free: freeBytes(this.#options.journal.path) };
    this.#options.log.error("disk full: sending paused too, until the free space grows", { needed: this.#needed() });
    this.#setProblem();
    return true;
  }

  get problem(): AgentProblem | null {
    return this.#problem;
  }

  /** Takes a failure of journaling: true when it was a full disk or a corrupt journal (then handled), false for anything else. */
  handle(error: unknown): boolean {
    if (isCorrupt(error)) {
      const corrupt = journalFault(error, this.#options.journal.path);
      if (this.#corrupt === undefined && corrupt instanceof JournalCorruptError) {
        this.#corrupt = corrupt;
        this.#options.log.error(corrupt.message);
        this.#options.onCorrupt(corrupt);
      }
      return true;
    }
    if (!isDiskFull(error)) return false;
    const freed = this.#freeBallast();
    if (this.#problem !== null) {
      if (freed) this.#setProblem();
      return true;
    }
    const named = journalFault(error, this.#options.journal.path);
    const message = named instanceof Error ? named.message : String(named);
    this.#fault = message;
    this.#sendsPaused = undefined;
    this.#setProblem(new Date().toISOString());
    this.#options.log.error("disk full: journaling paused until there is space, then a catch-up scan journals what changed; sending what is journaled goes on", {
      error: message,
    });
    if (Date.now() - this.#resumedAt > REFILL_WINDOW_MS) this.#nextProbeMs = this.#options.firstProbeMs ?? 1_000;
    this.#schedule();
    return true;
  }

  /** What to free for sends and journaling to go on: up to the free space journaling resumes at, at least 1 MiB. */
  #needed(): string {
    const free = freeBytes(this.#options.journal.path) ?? 0;
    const needed = Math.max(MIB, (this.#options.resumeFreeBytes ?? DEFAULT_RESUME_FREE_BYTES) - free);
    return `${Math.ceil(needed / MIB)} MiB`;
  }

  /** The problem for status: the full disk's error, what is paused, and when the ballast was used (since: the first failure's time, kept). */
  #setProblem(since: string = this.#problem?.since ?? new Date().toISOString()): void {
    const sends =
      this.#sendsPaused === undefined
        ? "sending what is journaled goes on (it frees the spooled content of what it sent)"
        : `sending paused too (the journal found no space to mark a message sent): free ${this.#needed()} in ${dirname(this.#options.journal.path)}`;
    const ballast = this.#ballast && this.#ballastFreed !== undefined ? `; ${ballastFreedText(this.#ballast, this.#ballastFreed)}` : "";
    this.#problem = { problem: `${this.#fault}; journaling paused, resumes by itself when there is space; ${sends}${ballast}`, since };
    this.#report(this.#problem);
  }

  /** Deletes the ballast for a full disk: true when it was held. What it freed is measured, not assumed (a snapshot keeps its blocks). */
  #freeBallast(): boolean {
    clearTimeout(this.#ballastTimer);
    const ballast = this.#ballast;
    if (!ballast?.held) return false;
    const before = freeBytes(ballast.path);
    if (!ballast.release()) return false;
    const free = freeBytes(ballast.path);
    const freed = before === undefined || free === undefined ? undefined : Math.max(0, free - before);
    this.#ballastFreed = { at: new Date().toISOString(), freed, free };
    this.#options.log.warn("space ballast deleted for the full disk, so that sent messages can still be marked", { path: ballast.path, bytes: ballast.bytes, freedBytes: freed, freeBytes: free });
    return true;
  }

  /** Makes the ballast while the disk is not full and has room for it, trying again on the probes' slowest pace until then. */
  #keepBallast(): void {
    const ballast = this.#ballast;
    if (!ballast || ballast.held || this.#problem !== null) return;
    if (ballast.make(this.#options.resumeFreeBytes ?? DEFAULT_RESUME_FREE_BYTES)) {
      if (this.#ballastFreed !== undefined) this.#options.log.info("space ballast made again", { path: ballast.path });
      this.#ballastFreed = undefined;
      this.#ballastWhy = undefined;
      return;
    }
    // Said once per reason (the free space it names aside), not at every retry.
    const why = ballast.why?.split(",")[0];
    if (why !== this.#ballastWhy) this.#options.log.warn("space ballast not made: a disk filled to its last byte would pause sending", { path: ballast.path, why: ballast.why });
    this.#ballastWhy = why;
    if (!this.#options.monitorEnabled) return;
    clearTimeout(this.#ballastTimer);
    this.#ballastTimer = setTimeout(() => this.#keepBallast(), this.#options.maxProbeMs ?? 30_000);
    this.#ballastTimer.unref();
  }

  #report(problem: AgentProblem | null): void {
    try {
      this.#options.onProblem?.(problem);
    } catch (error) {
      this.#options.log.warn("could not record the agent's problem for status", { error: String(error) });
    }
  }

  #schedule(): void {
    if (!this.#options.monitorEnabled || this.#problem === null) return;
    this.#timer = setTimeout(() => {
      this.probe().catch((error: unknown) => this.#options.log.error("catch-up after a full disk failed", { error: String(error) }));
    }, this.#nextProbeMs);
    this.#timer.unref();
    this.#nextProbeMs = Math.min(this.#nextProbeMs * 2, this.#options.maxProbeMs ?? 30_000);
  }

  /** Tries a write: when it commits, journaling resumes with a catch-up scan. True when journaling works. */
  async probe(): Promise<boolean> {
    if (this.#problem === null) return true;
    const free = freeBytes(this.#options.journal.path);
    if (free !== undefined && free < (this.#options.resumeFreeBytes ?? DEFAULT_RESUME_FREE_BYTES)) {
      this.#schedule();
      return false;
    }
    try {
      this.#options.journal.checkWritable();
    } catch (error) {
      if (!isDiskFull(error)) this.handle(error);
      this.#schedule();
      return false;
    }
    this.#problem = null;
    this.#sendsPaused = undefined;
    this.#resumedAt = Date.now();
    clearTimeout(this.#timer);
    this.#report(null);
    this.#options.log.info("journal writable again; catching up with a scan of every set");
    try {
      await this.#options.onResumed();
    } finally {
      // Made after the catch-up, from what it left free: made before, it took the room the catch-up needed, which
      // then failed, deleted it, and resumed to fail again at every probe.
      this.#keepBallast();
    }
    return true;
  }

  stop(): void {
    clearTimeout(this.#timer);
    clearTimeout(this.#ballastTimer);
    this.#timer = undefined;
    this.#problem = null;
    this.#sendsPaused = undefined;
  }
}
