// Small records in the state folder, written whole: a temp file flushed to
// disk, renamed over the old one, then the folder synced, so that a crash
// leaves the old record or the new one, never a torn or lost one.

import { closeSync, fsyncSync, openSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** Makes the folder's entries (a rename, a new name) durable. */
export function fsyncDir(dir: string): void {
  const fd = openSync(dir, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** `value` as indented JSON at dir/name, written whole; `mode` for a new file (e.g. 0o600 for a host's own records). */
export function writeJsonDurably(dir: string, name: string, value: unknown, mode?: number): void {
  const temp = join(dir, `${name}.${process.pid}.tmp`);
  writeFileSync(temp, `${JSON.stringify(value, null, 2)}\n`, { flush: true, ...(mode !== undefined ? { mode } : {}) });
  renameSync(temp, join(dir, name));
  fsyncDir(dir);
}
