// A few MiB held on the state folder's disk for the moment it fills: marking a
// message sent rewrites a few of the journal's pages (about 100 KB), which a
// disk filled to its last bytes cannot take, and sending (which frees the
// spooled content of what it sent) then paused until an operator freed space.
// The agent deletes this file when a journal write finds no space, so marks
// and status go on, and makes it again once the disk has room for it.

import { closeSync, openSync, renameSync, rmSync, statSync, writeSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { freeBytes } from "./journal-faults.ts";

export const BALLAST_FILE = "space-ballast";

export class SpaceBallast {
  readonly path: string;
  readonly bytes: number;
  #held = false;

  constructor(path: string, bytes: number) {
    this.path = path;
    this.bytes = bytes;
  }

  /** Whether the file is on disk (as far as this agent made or found it). */
  get held(): boolean {
    return this.#held;
  }

  /**
   * Makes the file unless it is there, when the disk has room for it and keepFreeBytes more: true when it is held.
   * Random bytes, not zeros, which a compressing filesystem (ZFS, btrfs) would store in no space at all. Not fsynced:
   * the space is taken when written, and one cut short by a crash is found short and made again.
   */
  make(keepFreeBytes: number): boolean {
    if (this.#held) return true;
    try {
      if (statSync(this.path).size >= this.bytes) return (this.#held = true);
    } catch {
      // Not there yet (or not readable): made below.
    }
    const free = freeBytes(this.path);
    if (free === undefined || free < keepFreeBytes + this.bytes) return false;
    const temp = `${this.path}.tmp`;
    try {
      const fd = openSync(temp, "w", 0o600);
      try {
        const bytes = randomBytes(this.bytes);
        for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, this.path);
      return (this.#held = true);
    } catch {
      rmSync(temp, { force: true });
      return false;
    }
  }

  /** Deletes the file: true when it was held (its space is free now). */
  release(): boolean {
    if (!this.#held) return false;
    this.#held = false;
    try {
      rmSync(this.path);
      return true;
    } catch {
      return false;
    }
  }
}
