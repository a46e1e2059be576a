// A restore's new file, written through its descriptor with node:fs's
// callback calls. Each FileHandle call (fs/promises) costs more CPU than the
// same call made this way (a promise made in C++, reference counting of the
// handle, a stats array per fstat): ~0.2 s of CPU over 5,000 files of the
// eight calls a file took then (six now: no chmod for most modes, and no fsync for a small file written O_DSYNC;
// bench/notes.md). The calls and their order are the caller's, as with a FileHandle; every one still runs on the
// thread pool.

import { close, constants, fchmod, fstat, fsync, ftruncate, futimes, open, write, writev } from "node:fs";
import type { PositionalWriter } from "./full-write.ts";

/** An open file made by openNewFile; close() it exactly once. */
export interface NewFile extends PositionalWriter {
  /**
   * Opened O_DSYNC: each write returns only once its bytes, and the size they give the file, are on disk. A file made
   * by writes alone then needs no fsync; a truncate is not covered.
   */
  readonly durableWrites: boolean;
  truncate(length: number): Promise<void>;
  sync(): Promise<void>;
  /** Its size and permission bits (0o7777) as the file system holds them now. */
  stat(): Promise<{ size: number; mode: number }>;
  chmod(mode: number): Promise<void>;
  /** Times in seconds since the epoch: a number, or a numeric string (before 1970: Node takes a negative number as "now"). */
  utimes(atime: number | string, mtime: number | string): Promise<void>;
  close(): Promise<void>;
}

/** Resolves with the callback's value, or rejects with its error. */
function settle<T>(resolve: (value: T) => void, reject: (error: Error) => void): (error: Error | null, value: T) => void {
  return (error, value) => (error ? reject(error) : resolve(value));
}

function done(resolve: () => void, reject: (error: Error) => void): (error: Error | null) => void {
  return (error) => (error ? reject(error) : resolve());
}

class DescriptorFile implements NewFile {
  readonly #fd: number;
  readonly durableWrites: boolean;

  constructor(fd: number, durableWrites: boolean) {
    this.#fd = fd;
    this.durableWrites = durableWrites;
  }

  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    return new Promise((resolve, reject) => write(this.#fd, buffer, offset, length, position, settle((bytesWritten: number) => resolve({ bytesWritten }), reject)));
  }

  writev(buffers: Uint8Array[], position: number): Promise<{ bytesWritten: number }> {
    return new Promise((resolve, reject) => writev(this.#fd, buffers, position, settle((bytesWritten: number) => resolve({ bytesWritten }), reject)));
  }

  truncate(length: number): Promise<void> {
    return new Promise((resolve, reject) => ftruncate(this.#fd, length, done(resolve, reject)));
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => fsync(this.#fd, done(resolve, reject)));
  }

  stat(): Promise<{ size: number; mode: number }> {
    return new Promise((resolve, reject) => fstat(this.#fd, settle((stats: { size: number; mode: number }) => resolve({ size: stats.size, mode: stats.mode & 0o7777 }), reject)));
  }

  chmod(mode: number): Promise<void> {
    return new Promise((resolve, reject) => fchmod(this.#fd, mode, done(resolve, reject)));
  }

  utimes(atime: number | string, mtime: number | string): Promise<void> {
    return new Promise((resolve, reject) => futimes(this.#fd, atime, mtime, done(resolve, reject)));
  }

  close(): Promise<void> {
    return new Promise((resolve, reject) => close(this.#fd, done(resolve, reject)));
  }
}

/** "wx", and O_DSYNC. */
const DURABLE_WRITES = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_TRUNC | constants.O_DSYNC;

/**
 * Creates path, which must not exist (O_EXCL: a clash fails, never overwrites), writable by its owner only: `mode`
 * may add read and execute bits (the process's umask applies), never a write or set-id bit beyond the owner's
 * write. The descriptor writes whatever the mode (000 too: the creating open grants it). With `durableWrites`, it is
 * opened O_DSYNC (NewFile.durableWrites): for a file written in one write, that write does what an fsync after it
 * would, without a call and a thread-pool hand-off of its own.
 */
export function openNewFile(path: string, mode = 0o600, options: { readonly durableWrites?: boolean } = {}): Promise<NewFile> {
  const durable = options.durableWrites === true;
  return new Promise((resolve, reject) => open(path, durable ? DURABLE_WRITES : "wx", (mode & 0o555) | 0o200, settle((fd: number) => resolve(new DescriptorFile(fd, durable)), reject)));
}
