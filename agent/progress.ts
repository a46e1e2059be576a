// Progress of a long operation: a bar redrawn in place on a terminal (files,
// bytes, and the rate and ETA once observed progress tells them), plain lines
// every few seconds when not a TTY.

import { escapeControl, formatBytes } from "./format.ts";
import type { Progress } from "./operations.ts";

export interface ProgressView {
  update(progress: Progress): void;
  done(): void;
}

const BAR_WIDTH = 24;
const PLAIN_EVERY_MS = 5_000;
/** A plain line that says nothing new (a marker's action still running) is repeated only this often: a log is not a clock. */
const PLAIN_SAME_EVERY_MS = 60_000;

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** What the progress has shown so far in this phase: how long it was watched, and the ETA when one can be told. */
export interface Timing {
  /** Since the phase's first update. */
  readonly elapsedMs: number;
  /** Bytes per second seen since the phase's first update; absent until it means something. */
  readonly bytesPerSecond?: number;
  readonly etaSeconds?: number;
}

/** How long progress must be watched, and how far it must get, before a rate or an ETA is shown. */
const MIN_OBSERVED_MS = 3_000;
const MIN_FRACTION = 0.02;

interface Sample {
  readonly at: number;
  readonly done: number;
  readonly bytes: number;
}

/** The done-count and bytes of an update, and its total when it has one. */
function measure(progress: Progress): { done: number; bytes: number; total?: number } | undefined {
  switch (progress.phase) {
    case "scan":
      return { done: progress.entries, bytes: progress.bytes, ...(progress.total ? { total: progress.total } : {}) };
    case "restore":
      return progress.totalBytes > 0
        ? { done: progress.bytes, bytes: progress.bytes, total: progress.totalBytes }
        : { done: progress.files, bytes: progress.bytes, total: progress.totalFiles };
    default:
      return undefined;
  }
}

/**
 * Rates and ETAs from observed progress only: measured from the phase's first
 * update (not from when the command started: hooks, settle time and connecting
 * are no part of it), and none until MIN_OBSERVED_MS of progress and
 * MIN_FRACTION of the total were seen, or when the total proved wrong.
 */
export class RateMeter {
  #phase = "";
  #first: Sample | undefined;

  timing(progress: Progress, now: number): Timing {
    const m = measure(progress);
    if (progress.phase !== this.#phase || m === undefined || this.#first === undefined) {
      this.#phase = progress.phase;
      this.#first = m && { at: now, done: m.done, bytes: m.bytes };
      return { elapsedMs: 0 };
    }
    const first = this.#first;
    const elapsedMs = now - first.at;
    if (elapsedMs < MIN_OBSERVED_MS) return { elapsedMs };
    const seconds = elapsedMs / 1000;
    const timing = { elapsedMs, bytesPerSecond: (m.bytes - first.bytes) / seconds };
    const rate = (m.done - first.done) / seconds;
    if (m.total === undefined || rate <= 0 || m.done > m.total || m.done / m.total < MIN_FRACTION) return timing;
    return { ...timing, etaSeconds: (m.total - m.done) / rate };
  }
}

/** One line describing the progress; the timing gives the rate and the ETA when they are known. */
export function describeProgress(progress: Progress, timing: Timing, tty: boolean): string {
  const rate = timing.bytesPerSecond !== undefined ? `  ${formatBytes(timing.bytesPerSecond)}/s` : "";
  const eta = timing.etaSeconds !== undefined ? `  ETA ${duration(timing.etaSeconds)}` : "";
  switch (progress.phase) {
    case "scan": {
      const files = progress.total ? `${progress.entries}/${progress.total} files` : `${progress.entries} files`;
      const bar = progress.total && tty ? `${drawBar(Math.min(progress.entries / progress.total, 1))} ` : "";
      // A long read (a large file, or one read again while it keeps changing) would otherwise look like a stalled scan.
      const reading = progress.reading ? `  reading ${escapeControl(progress.reading.path)} (${formatBytes(progress.reading.size)})` : "";
      return `scanning ${bar}${files}  ${formatBytes(progress.bytes)} journaled${rate}${eta}${reading}`;
    }
    case "wait":
      // A marker's seq is applied only once its action is done: "applied N-1 of N" alone reads as a stuck target.
      return progress.running
        ? `waiting for the target: it reached the marker (seq ${progress.seq}); its action is still running`
        : `waiting for the target: applied seq ${progress.appliedSeq} of ${progress.seq}`;
    case "repair":
      return `repairing ${progress.entries} entries`;
    case "restore": {
      const fraction = progress.totalBytes > 0 ? Math.min(progress.bytes / progress.totalBytes, 1) : progress.totalFiles > 0 ? progress.files / progress.totalFiles : 1;
      const bar = tty ? `${drawBar(fraction)} ` : "";
      return `restoring ${bar}${progress.files}/${progress.totalFiles} ${progress.unit ?? "files"}  ${formatBytes(progress.bytes)} of ${formatBytes(progress.totalBytes)}${rate}${eta}`;
    }
    case "check": {
      const fraction = progress.totalEntries > 0 ? Math.min(progress.entries / progress.totalEntries, 1) : 1;
      const bar = tty ? `[${"#".repeat(Math.round(fraction * BAR_WIDTH)).padEnd(BAR_WIDTH, "-")}] ` : "";
      return `checking ${bar}${progress.entries}/${progress.totalEntries} entries against the recovery point`;
    }
  }
}

function drawBar(fraction: number): string {
  return `[${"#".repeat(Math.round(fraction * BAR_WIDTH)).padEnd(BAR_WIDTH, "-")}]`;
}

export function createProgressView(options: { tty: boolean; write: (text: string) => void; now?: () => number }): ProgressView {
  const now = options.now ?? Date.now;
  const meter = new RateMeter();
  let lastPlain = 0;
  let lastPhase = "";
  let lastLine = "";
  let drawn = false;
  return {
    update(progress) {
      const line = describeProgress(progress, meter.timing(progress, now()), options.tty);
      if (options.tty) {
        options.write(`\r\x1b[2K${line}`);
        drawn = true;
        return;
      }
      const every = line === lastLine ? PLAIN_SAME_EVERY_MS : PLAIN_EVERY_MS;
      if (progress.phase !== lastPhase || now() - lastPlain >= every) {
        options.write(`${line}\n`);
        lastPlain = now();
        lastPhase = progress.phase;
        lastLine = line;
      }
    },
    done() {
      if (drawn) options.write("\n");
    },
  };
}
