// The end-to-end digest of a marker (DESIGN 8b): what the agent's index held
// right after the barrier scan, and what the applier's snapshot manifest holds,
// reduced the same way on both sides so that equal digests mean equal sets.
//
// A file set's digest covers every file, folder and symlink of the set as the
// agent journaled them (the index), one canonical line each, in byte order of
// the path's UTF-8: JSON of [path, kind, size, mode, mtimeNs, sha256 | link | ""].
// A volume set's covers its blocks that hold data: [index, sha256, size], in
// index order, with the volume's size. Block hashes of large files, object
// versions, tags and hard-link groups are where bytes live, not what the set
// is: they are left out.

import { createHash, type Hash } from "node:crypto";
import { z } from "zod";
import { Sha256, Size } from "./manifest-entry.ts";

export const SetDigestSchema = z.object({
  /** Lines the digest covers: entries of a file set, blocks holding data of a volume. */
  entries: Size,
  /** Files among them (0 for a volume). */
  files: Size,
  /** Bytes of the files (of the blocks, for a volume). */
  bytes: Size,
  /** SHA-256 over the canonical lines. */
  sha256: Sha256,
  /** A volume set's size in bytes. */
  volumeSize: Size.optional(),
});
export type SetDigest = z.infer<typeof SetDigestSchema>;

/** What a file-set line is made of: a manifest or index entry. */
export interface DigestEntry {
  readonly path: string;
  readonly kind: "file" | "dir" | "symlink";
  readonly size: number;
  readonly mode: number;
  readonly mtimeNs: string;
  readonly sha256?: string | null | undefined;
  readonly link?: string | null | undefined;
}

/** One block of a volume holding data. */
export interface DigestBlock {
  readonly index: number;
  readonly sha256: string;
  readonly size: number;
}

export class DigestOrderError extends Error {
  override name = "DigestOrderError";
}

/** The canonical line of an entry (without its newline). */
export function digestLine(entry: DigestEntry): string {
  const content = entry.kind === "file" ? (entry.sha256 ?? "") : entry.kind === "symlink" ? (entry.link ?? "") : "";
  return JSON.stringify([entry.path, entry.kind, entry.kind === "file" ? entry.size : 0, entry.mode, entry.mtimeNs, content]);
}

/** Byte order of two paths' UTF-8 (SQLite's and S3's order; JavaScript's `<` compares UTF-16 units). */
export function compareBytes(a: string, b: string): number {
  // Below the surrogates, UTF-16 units and UTF-8 bytes sort alike: only a difference at or after one needs the bytes.
  // A digest compares every path of a set, and encoding both each time was most of its cost (bench/notes.md).
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x < 0xd800 && y < 0xd800) return x < y ? -1 : 1;
    return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
  }
  // A lone surrogate last in the shorter may pair up in the longer: the bytes decide.
  if (n > 0 && a.charCodeAt(n - 1) >= 0xd800) return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** Builds a file set's digest from entries added in byte order of their paths (an index read in path order). */
export class FileDigestBuilder {
  readonly #hash: Hash = createHash("sha256");
  #previous: string | undefined;
  /** Lines not hashed yet: hashed some 64 KiB at a time, not one call per line. */
  #lines = "";
  #entries = 0;
  #files = 0;
  #bytes = 0;

  add(entry: DigestEntry): void {
    if (this.#previous !== undefined && compareBytes(this.#previous, entry.path) >= 0) {
      throw new DigestOrderError(`digest entries must come in byte order of their paths, once each: ${JSON.stringify(entry.path)} came after ${JSON.stringify(this.#previous)}`);
    }
    this.#previous = entry.path;
    this.#lines += `${digestLine(entry)}\n`;
    if (this.#lines.length >= 65_536) this.#hashLines();
    this.#entries += 1;
    if (entry.kind === "file") {
      this.#files += 1;
      this.#bytes += entry.size;
    }
  }

  #hashLines(): void {
    this.#hash.update(this.#lines);
    this.#lines = "";
  }

  digest(): SetDigest {
    this.#hashLines();
    return { entries: this.#entries, files: this.#files, bytes: this.#bytes, sha256: this.#hash.copy().digest("hex") };
  }
}

/** The digest of a file set's entries, in any order. */
export function fileSetDigest(entries: Iterable<DigestEntry>): SetDigest {
  const builder = new FileDigestBuilder();
  for (const entry of [...entries].sort((a, b) => compareBytes(a.path, b.path))) builder.add(entry);
  return builder.digest();
}

/** The digest of a volume's blocks holding data, in any order. */
export function volumeDigest(volumeSize: number, blocks: Iterable<DigestBlock>): SetDigest {
  const hash = createHash("sha256");
  let entries = 0;
  let bytes = 0;
  for (const block of [...blocks].sort((a, b) => a.index - b.index)) {
    hash.update(`${JSON.stringify([block.index, block.sha256, block.size])}\n`);
    entries += 1;
    bytes += block.size;
  }
  return { entries, files: 0, bytes, sha256: hash.digest("hex"), volumeSize };
}

/** True when two digests describe the same set. */
export function sameDigest(a: SetDigest, b: SetDigest): boolean {
  return a.sha256 === b.sha256 && a.entries === b.entries && a.files === b.files && a.bytes === b.bytes && a.volumeSize === b.volumeSize;
}

/** One path whose entry differs between the source (the marker's list) and the target (the snapshot). */
export interface DigestDifference {
  readonly path: string;
  readonly problem: string;
}

function describe(entry: DigestEntry): string {
  const content = entry.kind === "file" ? `, sha256 ${(entry.sha256 ?? "?").slice(0, 12)}` : entry.kind === "symlink" ? ` -> ${entry.link ?? ""}` : "";
  return `${entry.kind}, ${entry.kind === "file" ? `${entry.size} bytes, ` : ""}mode ${entry.mode.toString(8)}, mtime ${entry.mtimeNs}${content}`;
}

/** The paths whose canonical lines differ, in byte order, each saying how. */
export function digestDifferences(source: Iterable<DigestEntry>, target: Iterable<DigestEntry>): DigestDifference[] {
  const theirs = new Map<string, DigestEntry>();
  for (const entry of target) theirs.set(entry.path, entry);
  const differences: DigestDifference[] = [];
  for (const entry of source) {
    const other = theirs.get(entry.path);
    theirs.delete(entry.path);
    if (!other) differences.push({ path: entry.path, problem: `missing on the target (the source has a ${describe(entry)})` });
    else if (digestLine(other) !== digestLine(entry)) differences.push({ path: entry.path, problem: `differs: the source has a ${describe(entry)}; the target a ${describe(other)}` });
  }
  for (const entry of theirs.values()) differences.push({ path: entry.path, problem: `not on the source (the target has a ${describe(entry)})` });
  return differences.sort((a, b) => compareBytes(a.path, b.path));
}
