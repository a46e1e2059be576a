// Large files that keep changing are coalesced (issue 15): while a put of a
// large file is journaled and not yet sent, a new capture of it waits, and is
// taken once that put is sent. So the journal holds one unsent version of such
// a file, not a whole copy per change, and each capture reads the file once
// per send rather than once per write. A marker's barrier scan does not wait:
// the marker must see every file as it was at the barrier.
//
// Paced (issue 17): the target rebuilds every version of a large file whole
// (delta-rebuild.ts), so a busy database sent as fast as it is read builds a
// backlog there. The next version of a busy file is also held until the target
// can have rebuilt the previous one (its size at `bytesPerSecond`), unless the
// file went quiet (no write for `quietMs`): then the version after the last
// write is captured at once. Once the target's checkpoint is known (the
// agent polls the set's status), the next version waits for the target to
// have applied the previous one instead, up to WAIT_FACTOR times that pace:
// the checkpoint is only a hint (another generation's, or late), never a
// reason to hold a file for good. The pace follows the target: once it applied
// a version, the time it took (journaled, or the version it queued behind
// seen applied, to seen applied) is the least a version of that size is
// assumed to take. Without that, a target slower than
// bytesPerSecond (a loaded host, a large file) was sent a version at every
// cap, and after the last write rebuilt every queued version in turn.
//
// At most two versions of a busy file are sent and not applied: the one the
// target rebuilds and, once the file is quiet, the one after the last write.
// A version queued behind another is rebuilt after it, so its pace (and its
// wait for the checkpoint) runs from the end of that one's pace. Quiet
// releases a version only while no earlier version than the latest is
// unapplied (or past one more pace than its own: a checkpoint that does not
// move must not hold the last write for minutes): a pause in the writes that
// looked like the last one (a fsync stalled under load) otherwise queued a
// version behind the one in the rebuild, and after the real last write the
// target rebuilt three whole versions in turn. Quiet is measured from the
// watcher's last event on the file (`wrote`), not from the last capture
// attempt, which waits behind whatever holds the set's lane (from that attempt
// only without the watcher's events); and it must last twice the longest pause
// seen between the file's writes since its previous version (a database's
// fsync stalls while the disk writes back), and a tenth of the unapplied
// version's pace (a wrong guess costs the target one whole version: a tenth
// of that is what waiting may cost), both at most ten times quietMs (3 s),
// so the version after the last write is not held back long.
//
// Smaller files that keep changing are captured at most once per interval
// (capture-interval.ts); they wait here like the large ones.

import { CaptureInterval } from "./capture-interval.ts";
import type { Change } from "./journal.ts";

/** How busy large files are paced; loose options, defaulted at the boundary. */
export interface BusyFileOptions {
  /** Bytes a second the target is assumed to rebuild a large file at: the next version waits size / this. @default 64 MiB */
  readonly bytesPerSecond?: number;
  /** A waiting file without a write for this long (longer: see the top of busy-files.ts) is captured at once. @default 300 ms */
  readonly quietMs?: number;
  /** A smaller file that keeps changing is captured at most once this often (capture-interval.ts); 0: every change at once. @default 0 */
  readonly intervalMs?: number;
  /** Clock (ms); tests step it by hand. @default monotonic (steady through the wall clock's steps), wall-clock ms for status */
  readonly now?: () => number;
}

/**
 * A path whose capture waits: behind the version journaled as seq, until it is sent, paced, or applied by the target
 * (`until` at the latest, ms), or until its capture interval passed; "queued": seq and an earlier version (`behind`)
 * are both unapplied, so even a quiet file waits for the target to apply `behind`.
 */
export type BusyHold = { readonly path: string; readonly seq: number } & (
  | { readonly waitsFor: "send" }
  | { readonly waitsFor: "pace" | "apply" | "interval"; readonly until: number }
  | { readonly waitsFor: "queued"; readonly behind: number; readonly until: number }
);

const DEFAULT_BYTES_PER_SECOND = 64 * 1024 * 1024;
const DEFAULT_QUIET_MS = 300;
/** With the target's checkpoint known, a busy file waits at most this many times its pace for the previous version to be applied. */
const WAIT_FACTOR = 8;
/** A target seen slower than bytesPerSecond stretches the pace, to at most this many times bytesPerSecond's. */
const MAX_SLOWDOWN = 16;
/** A busy file's quiet wait is stretched (by its pauses, by its pace) to at most this many times quietMs: the version after the last write is not held back long. */
const MAX_QUIET_FACTOR = 10;
/** A quiet wait lasts at least this share of the version's pace: a wrong guess costs the target a whole version. */
const QUIET_SHARE = 10;

/**
 * Ms on a clock the wall clock's steps (NTP) do not move: a step back would otherwise hold a file that stopped changing
 * that much longer (its last write "in the future"), a step forward corrupt the learned pace. Started at the wall clock.
 */
const steadyNow = (): number => performance.timeOrigin + performance.now();

interface Unsent {
  readonly seq: number;
  readonly size: number;
  /** When it was journaled. */
  readonly at: number;
  /** How long the target is assumed to take to rebuild it (ms). */
  readonly pace: number;
  /** When the next version may be captured even while the file keeps changing (the target's checkpoint unknown). */
  readonly paceUntil: number;
  /** The latest it waits for the target to apply this version, the checkpoint known. */
  readonly waitUntil: number;
  /** The path's version before this one, when it was not known applied as this one was journaled. */
  readonly behind?: Unsent;
}

/** When a busy file was last written (the watcher's events), and the longest pause between its writes lately. */
interface Writes {
  last: number;
  /** The longest pause since the path's latest version was journaled, and in the period before that. */
  longest: number;
  longestBefore: number;
}

export class BusyFiles {
  readonly #threshold: number;
  readonly #bytesPerSecond: number;
  readonly #quietMs: number;
  readonly #now: () => number;
  /** Path -> its latest large put, until it is sent and its pace has passed. */
  readonly #unsent = new Map<string, Unsent>();
  /** Path -> its version released for capture, until the next is journaled: that one waits behind it. */
  readonly #released = new Map<string, Unsent>();
  /** Path -> its writes as the watcher saw them (large files only). */
  readonly #writes = new Map<string, Writes>();
  /** Paths whose capture waits, with when each last asked (its last write seen). */
  readonly #waiting = new Map<string, number>();
  /** Smaller files captured recently. */
  readonly #interval: CaptureInterval;
  /** The target's checkpoint (last seq applied), once known. */
  #applied: number | undefined;
  /** Ms per byte a version took from journaled to applied, the last time one was seen applied. */
  #targetMsPerByte = 0;
  /** Path -> when the version its latest waited behind was seen applied (its latest's rebuild began then at the earliest). */
  readonly #behindApplied = new Map<string, number>();
  /** What turns this clock's times into the wall clock's, for status: 0 for a clock given. */
  readonly #wallOffset: () => number;

  /** Files of at least thresholdBytes are coalesced. */
  constructor(thresholdBytes: number, options: BusyFileOptions = {}) {
    this.#threshold = thresholdBytes;
    this.#bytesPerSecond = options.bytesPerSecond ?? DEFAULT_BYTES_PER_SECOND;
    this.#quietMs = options.quietMs ?? DEFAULT_QUIET_MS;
    this.#now = options.now ?? steadyNow;
    this.#wallOffset = options.now ? () => 0 : () => Date.now() - steadyNow();
    this.#interval = new CaptureInterval(options.intervalMs ?? 0, this.#now);
  }

  /** Notes what was journaled: a put of a large file holds later captures of its path until it is sent and paced. */
  journaled(changes: readonly Change[], seqs: readonly number[]): void {
    const now = this.#now();
    changes.forEach((change, i) => {
      const seq = seqs[i];
      if (seq === undefined) return;
      // What the path held is gone (or moved): no version of it waits behind the old one.
      if (change.op !== "put") {
        for (const path of change.op === "rename" ? [change.from, change.to] : change.op === "delete" ? [change.path] : []) this.#forget(path);
        return;
      }
      // Its newest content is journaled (a marker's barrier took it): it no longer waits; a later write hints it again.
      this.#waiting.delete(change.path);
      if (change.size < this.#threshold) {
        this.#interval.captured(change.path, seq);
        return;
      }
      const configured = 1000 / this.#bytesPerSecond;
      const pace = change.size * Math.min(Math.max(configured, this.#targetMsPerByte), configured * MAX_SLOWDOWN);
      // A marker's barrier journals a version of a file that waits: the one before it is then what it waits behind.
      const previous = this.#released.get(change.path) ?? this.#unsent.get(change.path);
      this.#released.delete(change.path);
      this.#behindApplied.delete(change.path);
      const behind = previous && !this.#appliedAll(previous, now) ? withoutBehind(previous) : undefined;
      // Queued behind a version the target rebuilds, it is rebuilt after that one: its pace runs from there.
      const start = Math.max(now, behind?.paceUntil ?? now);
      this.#unsent.set(change.path, { seq, size: change.size, at: now, pace, paceUntil: start + pace, waitUntil: start + pace * WAIT_FACTOR, ...(behind ? { behind } : {}) });
      const writes = this.#writes.get(change.path);
      if (writes) {
        writes.longestBefore = writes.longest;
        writes.longest = 0;
      }
    });
  }

  /** True when path's capture waits (sentSeq is the last seq sent), and is remembered: see the top of this file. */
  defer(path: string, sentSeq: number): boolean {
    const unsent = this.#unsent.get(path);
    if (unsent === undefined) {
      if (this.#interval.waitsUntil(path) === undefined) return false;
      this.#waiting.set(path, this.#now());
      return true;
    }
    const now = this.#now();
    if (unsent.seq <= sentSeq && this.#paced(unsent, now)) {
      this.#release(path, unsent);
      return false;
    }
    this.#waiting.set(path, now);
    return true;
  }

  /** The watcher saw path written: a waiting file is quiet only some time after its last write. */
  wrote(path: string): void {
    if (!this.#unsent.has(path) && !this.#released.has(path)) return;
    const now = this.#now();
    const writes = this.#writes.get(path);
    if (!writes) {
      this.#writes.set(path, { last: now, longest: 0, longestBefore: 0 });
      return;
    }
    // A pause as long as the quiet wait was the file going quiet, not a pause between its writes.
    const pause = now - writes.last;
    if (pause < this.#quietMsOf(writes, this.#unsent.get(path))) writes.longest = Math.max(writes.longest, pause);
    writes.last = now;
  }

  /** Drops what is known of path (deleted, renamed, or its versions applied). */
  #forget(path: string): void {
    this.#unsent.delete(path);
    this.#released.delete(path);
    this.#writes.delete(path);
    this.#waiting.delete(path);
    this.#behindApplied.delete(path);
  }

  #release(path: string, unsent: Unsent): void {
    this.#unsent.delete(path);
    this.#waiting.delete(path);
    this.#released.set(path, unsent);
  }

  /** True when path has had no write for long enough to take its next version as the one after the last write. */
  #quiet(path: string, askedAt: number, now: number): boolean {
    return now >= this.#quietAt(path, askedAt);
  }

  /**
   * When path is quiet: from its last write the watcher saw, not from its last capture attempt (askedAt), which may
   * have waited behind the set's lane; from that attempt only without the watcher's events (a polling scan deferred it).
   */
  #quietAt(path: string, askedAt: number): number {
    const writes = this.#writes.get(path);
    return (writes?.last ?? askedAt) + this.#quietMsOf(writes, this.#unsent.get(path));
  }

  /** How long path must go without a write to be quiet: see the top of this file. */
  #quietMsOf(writes: Writes | undefined, unsent: Unsent | undefined): number {
    const pause = Math.max(writes?.longest ?? 0, writes?.longestBefore ?? 0);
    return Math.max(this.#quietMs, Math.min(Math.max(2 * pause, (unsent?.pace ?? 0) / QUIET_SHARE), MAX_QUIET_FACTOR * this.#quietMs));
  }

  /** True when no version of the path before `unsent` is left unapplied (as far as known): quiet may release it. */
  #nothingBehind(unsent: Unsent, now: number): boolean {
    const { behind } = unsent;
    if (behind === undefined) return true;
    return (this.#applied !== undefined && this.#applied >= behind.seq) || now >= this.#queuedUntil(behind);
  }

  /**
   * The latest a quiet file waits for the target to apply `behind`: one pace past that version's own, not its whole
   * wait for the checkpoint, which may be stuck (another generation's) and would hold the last write for minutes.
   */
  #queuedUntil(behind: Unsent): number {
    return this.#applied === undefined ? behind.paceUntil : behind.paceUntil + behind.pace;
  }

  /** True when the version and the one it waits behind (if any) are applied, or their waits are over. */
  #appliedAll(unsent: Unsent, now: number): boolean {
    return this.#paced(unsent, now) && this.#nothingBehind(unsent, now);
  }

  /** Paths that waited and are due now (previous put sent; paced, or quiet): to capture now. */
  ready(sentSeq: number): string[] {
    const now = this.#now();
    const ready: string[] = [];
    for (const [path, askedAt] of this.#waiting) {
      const unsent = this.#unsent.get(path);
      if (unsent !== undefined && (unsent.seq > sentSeq || !(this.#paced(unsent, now) || (this.#quiet(path, askedAt, now) && this.#nothingBehind(unsent, now))))) continue;
      if (unsent === undefined && this.#interval.waitsUntil(path) !== undefined) continue;
      if (unsent) this.#release(path, unsent);
      else this.#waiting.delete(path);
      ready.push(path);
    }
    return ready;
  }

  /** Notes the target's checkpoint: a busy file whose previous version it applied may go. */
  applied(seq: number): void {
    const before = this.#applied;
    this.#applied = Math.max(this.#applied ?? seq, seq);
    if (before === undefined) return;
    const now = this.#now();
    const newlyApplied = (version: Unsent) => version.seq > before && version.seq <= seq && version.size > 0;
    for (const [path, unsent] of [...this.#unsent, ...this.#released]) {
      const { behind } = unsent;
      if (behind && newlyApplied(behind)) {
        this.#targetMsPerByte = (now - behind.at) / behind.size;
        this.#behindApplied.set(path, now);
      }
      // Queued behind another, it was rebuilt only after that one: timed from when that one was seen applied.
      const start = behind ? Math.max(unsent.at, this.#behindApplied.get(path) ?? unsent.at) : unsent.at;
      if (newlyApplied(unsent)) this.#targetMsPerByte = (now - start) / unsent.size;
    }
    // A released version the target applied is behind nothing any more; a path no version of which waits is forgotten.
    for (const [path, released] of this.#released) {
      if (released.seq > seq) continue;
      this.#released.delete(path);
      this.#behindApplied.delete(path);
      if (!this.#unsent.has(path)) this.#writes.delete(path);
    }
    // An applied version of a file that does not wait holds nothing back: defer would release it at the next capture.
    for (const [path, unsent] of this.#unsent) if (unsent.seq <= seq && !this.#waiting.has(path)) this.#forget(path);
  }

  /** The latest a version is waited for: its pace, or its wait for the target's checkpoint once that is known. */
  #until(unsent: Unsent): number {
    return this.#applied === undefined ? unsent.paceUntil : unsent.waitUntil;
  }

  /** True when the target can have rebuilt the version: applied, when the checkpoint is known; else its pace passed. */
  #paced(unsent: Unsent, now: number): boolean {
    if (this.#applied === undefined) return now >= unsent.paceUntil;
    return this.#applied >= unsent.seq || now >= unsent.waitUntil;
  }

  /** The paths whose capture waits, each with the seq of the version it waits behind and for what (until when at most), for `tidemark status`. */
  held(sentSeq: number): BusyHold[] {
    const wall = this.#wallOffset();
    return this.#heldOnOwnClock(sentSeq).map((hold) => ("until" in hold ? { ...hold, until: hold.until + wall } : hold));
  }

  #heldOnOwnClock(sentSeq: number): BusyHold[] {
    return [...this.#waiting.keys()].flatMap((path): BusyHold[] => {
      const unsent = this.#unsent.get(path);
      if (unsent === undefined) {
        const interval = this.#interval.waitsUntil(path);
        return interval ? [{ path, seq: interval.seq, waitsFor: "interval", until: interval.until }] : [];
      }
      if (unsent.seq > sentSeq) return [{ path, seq: unsent.seq, waitsFor: "send" }];
      const { behind } = unsent;
      // At the latest once its own wait is over: before that only if quiet (and `behind` applied or its wait over).
      if (behind && !this.#nothingBehind(unsent, this.#now())) return [{ path, seq: unsent.seq, waitsFor: "queued", behind: behind.seq, until: this.#until(unsent) }];
      if (this.#applied === undefined) return [{ path, seq: unsent.seq, waitsFor: "pace", until: unsent.paceUntil }];
      return [{ path, seq: unsent.seq, waitsFor: "apply", until: unsent.waitUntil }];
    });
  }

  /**
   * Ms from now until the next waiting path is due, or undefined when none is. A path whose previous version is not
   * sent (seq after sentSeq) is not due before a send, which looks at the waiting paths again (afterSend): a timer
   * for it would only wake to find it still waiting, again and again for as long as the send takes.
   */
  nextDueMs(sentSeq: number): number | undefined {
    const now = this.#now();
    let due: number | undefined;
    for (const [path, askedAt] of this.#waiting) {
      const unsent = this.#unsent.get(path);
      if (unsent !== undefined && unsent.seq > sentSeq) continue;
      // Quiet is looked at again when it may be due; held behind an earlier version, once that one's wait is over.
      const behind = unsent && !this.#nothingBehind(unsent, now) ? unsent.behind : undefined;
      const quietAt = Math.max(this.#quietAt(path, askedAt), behind ? this.#queuedUntil(behind) : 0);
      const at = unsent ? Math.min(this.#until(unsent), quietAt) : (this.#interval.waitsUntil(path)?.until ?? now);
      due = Math.min(due ?? at, at);
    }
    return due === undefined ? undefined : Math.max(0, due - now);
  }
}

/** The version as the one a later version waits behind: what it waited behind is no longer looked at. */
function withoutBehind(unsent: Unsent): Unsent {
  const { behind: _behind, ...rest } = unsent;
  return rest;
}
