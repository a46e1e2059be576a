// Capture: read one source entry and turn the difference between it and the
// index into changes. The content is read here, when journaled, so what the
// target gets at a seq is what the source held then.

import { createHash, randomUUID } from "node:crypto";
import { createReadStream, createWriteStream, type BigIntStats } from "node:fs";
import { lstat, open, readFile, readlink, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { Transform } from "node:stream";
import { MAX_INLINE_DECODED_BYTES } from "../contract/wire.ts";
import type { Change, IndexEntry, Journal } from "./journal.ts";
import { isExcluded, type SetSpec } from "./set-spec.ts";

/** How often a file that keeps changing while read is re-read before the watcher is left to catch the next write. */
const STABLE_READ_ATTEMPTS = 5;

export interface CaptureResult {
  readonly changes: Change[];
  /** The entry is a directory that exists on the source (its children need scanning). */
  readonly isDirectory: boolean;
}

const mode = (st: BigIntStats) => Number(st.mode & 0o7777n);

async function statOrGone(abs: string): Promise<BigIntStats | undefined> {
  try {
    return await lstat(abs, { bigint: true });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return undefined;
    throw error;
  }
}

/** Deletes for an indexed entry and everything below it, children first. */
export function deletesFor(journal: Journal, set: string, path: string): Change[] {
  const known = journal.entry(set, path);
  if (!known) return [];
  const below = known.kind === "dir" ? journal.descendants(set, path) : [];
  return [...below, known].map((entry) => ({ op: "delete", path: entry.path }));
}

function sameFile(known: IndexEntry | undefined, st: BigIntStats): boolean {
  return known?.kind === "file" && known.size === Number(st.size) && known.mtimeNs === st.mtimeNs.toString() && known.mode === mode(st);
}

/** Changes that bring the index entry of path in line with the source; [] when it already is. */
export async function capture(journal: Journal, spec: SetSpec, path: string): Promise<CaptureResult> {
  const abs = join(spec.root, path);
  const st = isExcluded(spec, path) ? undefined : await statOrGone(abs);
  const known = journal.entry(spec.name, path);
  if (!st) return { changes: deletesFor(journal, spec.name, path), isDirectory: false };

  // A path that changed kind (file -> dir, dir -> symlink ...) is deleted first, with whatever was below it.
  const replaced = (kind: IndexEntry["kind"]) => (known && known.kind !== kind ? deletesFor(journal, spec.name, path) : []);

  if (st.isDirectory()) {
    const changes = replaced("dir");
    const mtimeNs = st.mtimeNs.toString();
    if (changes.length > 0 || !known || known.mode !== mode(st) || known.mtimeNs !== mtimeNs) {
      changes.push({ op: "mkdir", path, mode: mode(st), mtimeNs });
    }
    return { changes, isDirectory: true };
  }
  if (st.isSymbolicLink()) {
    const target = await readlink(abs);
    const mtimeNs = st.mtimeNs.toString();
    const changes = replaced("symlink");
    if (changes.length > 0 || !known || known.link !== target || known.mtimeNs !== mtimeNs) {
      changes.push({ op: "symlink", path, target, mtimeNs });
    }
    return { changes, isDirectory: false };
  }
  if (st.isFile()) {
    if (sameFile(known, st)) return { changes: [], isDirectory: false };
    const changes = replaced("file");
    const put = await readStable(journal, abs, path, st);
    if (put) changes.push(put);
    else changes.push(...deletesFor(journal, spec.name, path));
    return { changes, isDirectory: false };
  }
  // Sockets, FIFOs and devices have no content to replicate.
  return { changes: [], isDirectory: false };
}

/**
 * Reads a file so that the bytes match the size and mtime recorded with them:
 * re-reads while the file changes underneath. Returns undefined when the file vanished.
 */
async function readStable(journal: Journal, abs: string, path: string, first: BigIntStats): Promise<Change | undefined> {
  let put: Change | undefined;
  for (let attempt = 0; attempt < STABLE_READ_ATTEMPTS; attempt++) {
    const before = attempt === 0 ? first : await statOrGone(abs);
    if (!before?.isFile()) return undefined;
    let content: { bytes: Uint8Array } | { spool: string };
    let sha256: string;
    let size: number;
    try {
      if (before.size <= BigInt(MAX_INLINE_DECODED_BYTES)) {
        const bytes = await readFile(abs);
        content = { bytes };
        size = bytes.length;
        sha256 = createHash("sha256").update(bytes).digest("hex");
      } else {
        ({ content, sha256, size } = await spool(journal.spoolDir, abs));
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const after = await statOrGone(abs);
    if (!after?.isFile()) {
      if ("spool" in content) await rm(join(journal.spoolDir, content.spool), { force: true });
      return undefined;
    }
    if (put?.op === "put" && "spool" in put.content) await rm(join(journal.spoolDir, put.content.spool), { force: true });
    put = { op: "put", path, size, mode: mode(after), mtimeNs: after.mtimeNs.toString(), sha256, content };
    if (after.mtimeNs === before.mtimeNs && after.size === before.size && BigInt(size) === after.size) return put;
  }
  // Still changing: journal what was read; the write in progress brings another event and another capture.
  return put;
}

/** Copies a large file into the spool directory (fsynced), hashing it on the way. */
async function spool(spoolDir: string, abs: string): Promise<{ content: { spool: string }; sha256: string; size: number }> {
  const name = randomUUID();
  const temp = join(spoolDir, `${name}.tmp`);
  const hash = createHash("sha256");
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(abs), tap, createWriteStream(temp));
    const handle = await open(temp, "r+");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, join(spoolDir, name));
    await syncDir(spoolDir);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return { content: { spool: name }, sha256: hash.digest("hex"), size };
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
