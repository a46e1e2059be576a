// The digest a marker carries (DESIGN 8b): what the index holds right after
// the barrier scan, which is exactly what the target must hold when it
// reaches the marker. A file set's digest comes with the index as a manifest
// (inline, or staged when large) so that the applier, when its snapshot
// differs, can name every path that does, missing ones included: sub-hashes
// per folder or bucket could only narrow a difference down, never name a
// file the target lost. It is read only then; a matching snapshot costs the
// applier nothing more.

import { blockCount, blockLength, zeroBlockSha256 } from "../contract/wire.ts";
import { FileDigestBuilder, volumeDigest, type DigestBlock } from "../contract/digest.ts";
import type { TaskFields } from "../contract/tasks.ts";
import type { Change, IndexEntry, Journal } from "./journal.ts";
import { writeManifestOf } from "./manifest.ts";
import type { SetSpec } from "./set-spec.ts";

export type MarkerDigestFields = Pick<Extract<Change, { op: "task" }>, "digest" | "content">;

/** True for a marker that takes a snapshot: its digest is checked against it. */
export function carriesDigest(fields: TaskFields): boolean {
  return fields.action === "snapshot" || fields.action === "ebs-snapshot" || fields.snapshot === true;
}

/** The digest of the set for a marker that takes a snapshot (its digest is checked against it); other markers carry none. */
export async function markerDigest(journal: Journal, spec: SetSpec, fields: TaskFields): Promise<MarkerDigestFields> {
  if (!carriesDigest(fields)) return {};
  return spec.volume ? volumeMarkerDigest(journal, spec.name) : fileSetMarkerDigest(journal, spec.name);
}

/** The digest of a file set's index, with the index as its list. */
export function fileSetMarkerDigest(journal: Journal, set: string): Promise<MarkerDigestFields> {
  return fileSetDigestOf(journal.spoolDir, journal.index.allEntries(set));
}

/** The digest of index entries read in path order, with them as its list (written to spoolDir). */
export async function fileSetDigestOf(spoolDir: string, entries: Iterable<IndexEntry>): Promise<MarkerDigestFields> {
  const builder = new FileDigestBuilder();
  const manifest = await writeManifestOf(spoolDir, entries, (entry) => builder.add(entry));
  return { digest: { ...builder.digest(), list: { size: manifest.size, sha256: manifest.sha256 } }, content: manifest.content };
}

/** The digest of a volume set's block map as journaled: the blocks that hold data (the target lists no zero blocks). */
export function volumeMarkerDigest(journal: Journal, set: string): MarkerDigestFields {
  const size = journal.volumes.volume(set)?.size ?? 0;
  const blocks: DigestBlock[] = [];
  for (const [index, sha256] of journal.volumes.blocks(set, 0, blockCount(size))) {
    const length = blockLength(size, index);
    if (sha256 !== zeroBlockSha256(length)) blocks.push({ index, sha256, size: length });
  }
  return { digest: volumeDigest(size, blocks) };
}
