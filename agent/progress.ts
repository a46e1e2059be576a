// Progress of a long operation: a bar redrawn in place on a terminal (files,
// bytes, rate, ETA), plain lines every few seconds when not a TTY.

import { formatBytes } from "./format.ts";
import type { Progress } from "./operations.ts";

export interface ProgressView {
  update(progress: Progress): void;
  done(): void;
}

const BAR_WIDTH = 24;
const PLAIN_EVERY_MS = 5_000;

function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--:--";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n: number) => String(n).padStart(2, "0");
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** One line describing the progress; elapsedMs drives the rate and the ETA. */
export function describeProgress(progress: Progress, elapsedMs: number, tty: boolean): string {
  switch (progress.phase) {
    case "scan": {
      const seconds = Math.max(elapsedMs / 1000, 0.001);
      const rate = `${formatBytes(progress.bytes / seconds)}/s`;
      const files = progress.total ? `${progress.entries}/${progress.total} files` : `${progress.entries} files`;
      let bar = "";
      let eta = "";
      if (progress.total) {
        const fraction = Math.min(progress.entries / progress.total, 1);
        if (tty) bar = `[${"#".repeat(Math.round(fraction * BAR_WIDTH)).padEnd(BAR_WIDTH, "-")}] `;
        eta = `  ETA ${duration(fraction > 0 ? (seconds / fraction) * (1 - fraction) : Number.NaN)}`;
      }
      return `scanning ${bar}${files}  ${formatBytes(progress.bytes)} journaled  ${rate}${eta}`;
    }
    case "wait":
      return `waiting for the target: applied seq ${progress.appliedSeq} of ${progress.seq}`;
    case "repair":
      return `repairing ${progress.entries} entries`;
    case "restore": {
      const fraction = progress.totalBytes > 0 ? Math.min(progress.bytes / progress.totalBytes, 1) : progress.totalFiles > 0 ? progress.files / progress.totalFiles : 1;
      const bar = tty ? `[${"#".repeat(Math.round(fraction * BAR_WIDTH)).padEnd(BAR_WIDTH, "-")}] ` : "";
      const seconds = Math.max(elapsedMs / 1000, 0.001);
      const eta = duration(fraction > 0 ? (seconds / fraction) * (1 - fraction) : Number.NaN);
      return `restoring ${bar}${progress.files}/${progress.totalFiles} ${progress.unit ?? "files"}  ${formatBytes(progress.bytes)} of ${formatBytes(progress.totalBytes)}  ${formatBytes(progress.bytes / seconds)}/s  ETA ${eta}`;
    }
    case "check": {
      const fraction = progress.totalEntries > 0 ? Math.min(progress.entries / progress.totalEntries, 1) : 1;
      const bar = tty ? `[${"#".repeat(Math.round(fraction * BAR_WIDTH)).padEnd(BAR_WIDTH, "-")}] ` : "";
      return `checking ${bar}${progress.entries}/${progress.totalEntries} entries against the recovery point`;
    }
  }
}

export function createProgressView(options: { tty: boolean; write: (text: string) => void; now?: () => number }): ProgressView {
  const now = options.now ?? Date.now;
  const started = now();
  let lastPlain = 0;
  let lastPhase = "";
  let drawn = false;
  return {
    update(progress) {
      const line = describeProgress(progress, now() - started, options.tty);
      if (options.tty) {
        options.write(`\r\x1b[2K${line}`);
        drawn = true;
        return;
      }
      if (progress.phase !== lastPhase || now() - lastPlain >= PLAIN_EVERY_MS) {
        options.write(`${line}\n`);
        lastPlain = now();
        lastPhase = progress.phase;
      }
    },
    done() {
      if (drawn) options.write("\n");
    },
  };
}
