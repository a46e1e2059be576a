// The manifest a verification sends: the set as the index holds it (which a
// barrier scan has just brought in line with the source), one JSON line per
// entry, gzip'ed, written to the spool so a set of millions stays on disk.

import { createHash, randomUUID } from "node:crypto";
import { createWriteStream } from "node:fs";
import { open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { constants, createGzip } from "node:zlib";
import { MAX_INLINE_DECODED_BYTES, type ManifestEntry } from "../contract/wire.ts";
import type { IndexEntry, Journal } from "./journal.ts";
import { ensureSpoolFolder } from "./spool-folder.ts";

export interface Manifest {
  readonly content: { bytes: Uint8Array } | { spool: string };
  readonly size: number;
  readonly sha256: string;
  readonly entries: number;
}

function toManifestEntry(entry: IndexEntry): ManifestEntry {
  return {
    path: entry.path,
    kind: entry.kind,
    size: entry.size,
    mode: entry.mode,
    mtimeNs: entry.mtimeNs,
    ...(entry.sha256 ? { sha256: entry.sha256 } : {}),
    ...(entry.link !== null ? { link: entry.link } : {}),
    ...(entry.blocks ? { blocks: Buffer.from(entry.blocks).toString("base64") } : {}),
  };
}

/** Writes the set's index as a manifest; `onEntry` sees each index entry as it is written (in path order). */
export function writeManifest(journal: Journal, set: string, onEntry?: (entry: IndexEntry) => void): Promise<Manifest> {
  return writeManifestOf(journal.spoolDir, journal.index.allEntries(set), onEntry);
}

/** Writes entries (in path order) as a manifest in spoolDir. */
export async function writeManifestOf(spoolDir: string, indexEntries: Iterable<IndexEntry>, onEntry?: (entry: IndexEntry) => void): Promise<Manifest> {
  const name = randomUUID();
  const temp = join(spoolDir, `${name}.tmp`);
  const hash = createHash("sha256");
  let size = 0;
  let entries = 0;
  const lines = Readable.from(
    (function* () {
      // Lines go to gzip some 64 KiB at a time: a stream chunk per line costs more than the line.
      let chunk = "";
      for (const entry of indexEntries) {
        entries += 1;
        onEntry?.(entry);
        chunk += `${JSON.stringify(toManifestEntry(entry))}\n`;
        if (chunk.length >= 65_536) {
          yield chunk;
          chunk = "";
        }
      }
      if (chunk !== "") yield chunk;
    })(),
  );
  const tap = new Transform({
    transform(chunk: Buffer, _encoding, done) {
      hash.update(chunk);
      size += chunk.length;
      done(null, chunk);
    },
  });
  try {
    await ensureSpoolFolder(spoolDir);
    // The fastest level: a marker's digest waits for this, and its lines (mostly SHA-256 hex) gain little from more.
    await pipeline(lines, createGzip({ level: constants.Z_BEST_SPEED }), tap, createWriteStream(temp));
    const handle = await open(temp, "r+");
    await handle.sync().finally(() => handle.close());
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  const sha256 = hash.digest("hex");
  if (size <= MAX_INLINE_DECODED_BYTES) {
    const bytes = await readFile(temp);
    await rm(temp, { force: true });
    return { content: { bytes }, size, sha256, entries };
  }
  await rename(temp, join(spoolDir, name));
  return { content: { spool: name }, size, sha256, entries };
}
