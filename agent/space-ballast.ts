// A few MiB held on the state folder's disk for the moment it fills: marking a
// message sent rewrites a few of the journal's pages (about 100 KB), which a
// disk filled to its last bytes cannot take, and sending (which frees the
// spooled content of what it sent) then paused until an operator freed space.
// The agent deletes this file when a journal write finds no space, so marks
// and status go on, and makes it again once the disk has room for it.

import { closeSync, constants, lstatSync, openSync, readdirSync, renameSync, rmSync, writeSync, type Stats } from "node:fs";
import { randomBytes } from "node:crypto";
import { dirname, join } from "node:path";
import { freeBytes } from "./journal-faults.ts";

export const BALLAST_FILE = "space-ballast";
const MIB = 1024 * 1024;

function lstatOf(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

export class SpaceBallast {
  readonly path: string;
  readonly bytes: number;
  #held = false;
  #why: string | undefined;

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
    // Never followed: a link planted here (by whoever can write the state folder) is no ballast, and an agent running
    // as root writing through it would overwrite the file it points at.
    const found = lstatOf(this.path);
    if (found?.isFile() && found.size >= this.bytes && (process.geteuid === undefined || found.uid === process.geteuid())) return (this.#held = true);
    if (found?.isDirectory()) {
      this.#why = `${this.path} is a directory, not a space ballast: remove it`;
      return false;
    }
    if (found !== undefined && !found.isFile()) {
      // A link (or a socket, a fifo): the link itself removed, never what it points at. A short file, or one of
      // another owner, is replaced below (rename replaces the name, following nothing).
      try {
        rmSync(this.path, { force: true });
      } catch (error) {
        this.#why = `could not remove ${this.path}, not a space ballast: ${error instanceof Error ? error.message : String(error)}`;
        return false;
      }
    }
    const free = freeBytes(this.path);
    if (free === undefined || free < keepFreeBytes + this.bytes) {
      this.#why = `${Math.ceil((keepFreeBytes + this.bytes) / MIB)} MiB free needed in ${dirname(this.path)}, ${free === undefined ? "unknown" : `${(free / MIB).toFixed(1)} MiB`} free`;
      return false;
    }
    // A new file of this process's own, never one found in its place (a link, a leftover).
    const temp = `${this.path}.${process.pid}.tmp`;
    this.#removeLeftovers(temp);
    try {
      rmSync(temp, { force: true });
      const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      try {
        const bytes = randomBytes(this.bytes);
        for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, this.path);
      this.#why = undefined;
      return (this.#held = true);
    } catch (error) {
      this.#why = `could not make ${this.path}: ${error instanceof Error ? error.message : String(error)}`;
      try {
        rmSync(temp, { force: true });
      } catch {
        // A directory planted at the temp name: named in the error above.
      }
      return false;
    }
  }

  /**
   * Removes the temp files of agents that stopped while making theirs (2 MiB each): names of the ballast's pattern,
   * not directories; a link is removed itself, never followed. Another process still making one has its rename fail,
   * and makes it again later.
   */
  #removeLeftovers(own: string): void {
    const dir = dirname(this.path);
    const pattern = new RegExp(`^${BALLAST_FILE}\\.\\d+\\.tmp$`);
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch {
      return;
    }
    for (const name of names) {
      const path = join(dir, name);
      if (!pattern.test(name) || path === own || lstatOf(path)?.isDirectory() !== false) continue;
      try {
        rmSync(path, { force: true });
      } catch {
        // Gone meanwhile, or not ours to remove: left.
      }
    }
  }

  /** Why the file is not held, after a make() that did not make it (undefined while it is held or never tried). */
  get why(): string | undefined {
    return this.#held ? undefined : this.#why;
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
