// Recovery after a lost journal (deleted, or a new host's first run after
// `tidemark adopt`): the index is empty, so a scan would journal every file
// with its content although the target may hold nearly all of it already.
// Before any scan, each source file is compared with the target's live
// object instead: read and hashed here, and compared with the SHA-256 and
// size in the object's metadata (stamped by the applier's write, which proved
// them). A file the target holds exactly enters the index as the target holds
// it, so the scan behind skips it; one that differs only in mode, mtime or
// hard-link group travels as a metadata-only put; anything else is left to the
// scan, which sends it whole. No listing is trusted: every file is looked up
// by its own key. A journal restored from an older copy has an index, but an
// old one: a file it knows with another size or mtime than the source's is
// compared the same way (the target likely got the newer version from the
// journal that was lost). The verification behind the recovery then compares the
// target with the whole index, deletes what the source no longer holds, and
// repairs anything the target changed after its object was read here.

import { createHash } from "node:crypto";
import { join } from "node:path";
import { mapConcurrent } from "../contract/async.ts";
import { dataKey, decodeMeta } from "../contract/layout.ts";
import { MIN_DELTA_FILE_BYTES, MAX_RANGED_FILE_BYTES } from "../contract/delta-ranges.ts";
import { BLOCK_SIZE } from "../contract/wire.ts";
import type { TargetStore } from "../lambdas/target/index.ts";
import { linkGroupOf, stampOf, statOrGone } from "./capture.ts";
import { ChunkHasher } from "./chunk-hash.ts";
import { readFolder, type EntryStat } from "./folder-stats.ts";
import type { Change, IndexEntry, Journal } from "./journal.ts";
import { unreplicableName } from "./skipped-names.ts";
import { isExcluded, type SetSpec } from "./set-spec.ts";
import { openInSet, OutsideSetError, resolveSetRoot } from "./set-files.ts";

/** A file as the target's live mirror holds it, from its object's metadata. */
export interface TargetFile {
  readonly size: number;
  readonly sha256: string;
  readonly mode: number;
  readonly mtimeNs: string;
  readonly linkGroup?: string;
}

/** The target's live file at a path of a set, or undefined when it holds none there (or nothing tidemark wrote). */
export type TargetFileLookup = (set: string, path: string) => Promise<TargetFile | undefined>;

/** Reads a live file's size and metadata with one HEAD of its own key. */
export function targetFileReader(store: Pick<TargetStore, "head">): TargetFileLookup {
  return async (set, path) => {
    const head = await store.head(dataKey(set, path));
    const meta = decodeMeta(head?.meta);
    if (!head || meta?.kind !== "file" || meta.sha256 === undefined) return undefined;
    return { size: head.size, sha256: meta.sha256, mode: meta.mode, mtimeNs: meta.mtimeNs, ...(meta.linkGroup ? { linkGroup: meta.linkGroup } : {}) };
  };
}

export interface BaselineReport {
  /** Source files compared with the target. */
  files: number;
  /** Held by the target exactly: indexed, nothing sent. */
  same: number;
  /** Same content, other mode, mtime or link group: journaled as metadata-only puts. */
  metadataOnly: number;
  /** Missing on the target, different, or changing while read: left to the scan, which sends them whole. */
  differ: number;
  /** Bytes of source files read to compare them. */
  bytesRead: number;
  /** Of those that differ: files whose target object or source content could not be read (the scan sends or names them). */
  unreadable: number;
}

/** Files compared at once: HEADs wait on the network, so more than the disk alone would want. */
const COMPARE_CONCURRENCY = 16;
/** Files gathered before they are compared, and their results written in one transaction. */
const BATCH_FILES = 256;
/** As capture's: a file modified this recently may be rewritten within its timestamp tick after the hash, size unchanged. */
const RACY_WINDOW_NS = 2_000_000_000n;

interface LocalHash {
  readonly size: number;
  readonly sha256: string;
  /** sha256 of each block, for files of more than one block (as capture indexes them). */
  readonly blockHashes?: Buffer;
  /** Chunk fingerprints, for files large enough for a delta (as capture indexes them). */
  readonly chunkHashes?: Buffer;
}

/** The file's SHA-256, and the block hashes and chunk fingerprints capture would index with it: later changes then travel as deltas. */
async function hashLocal(abs: string): Promise<LocalHash> {
  const whole = createHash("sha256");
  const chunks = new ChunkHasher();
  const blocks: Buffer[] = [];
  let block = createHash("sha256");
  let inBlock = 0;
  let size = 0;
  for await (const piece of (await openInSet(abs)).createReadStream({ highWaterMark: BLOCK_SIZE })) {
    const bytes = piece as Buffer;
    whole.update(bytes);
    chunks.update(bytes);
    size += bytes.length;
    for (let offset = 0; offset < bytes.length; ) {
      const take = Math.min(BLOCK_SIZE - inBlock, bytes.length - offset);
      block.update(bytes.subarray(offset, offset + take));
      inBlock += take;
      offset += take;
      if (inBlock === BLOCK_SIZE) {
        blocks.push(block.digest());
        block = createHash("sha256");
        inBlock = 0;
      }
    }
  }
  if (inBlock > 0) blocks.push(block.digest());
  return {
    size,
    sha256: whole.digest("hex"),
    ...(size > BLOCK_SIZE ? { blockHashes: Buffer.concat(blocks) } : {}),
    ...(size >= MIN_DELTA_FILE_BYTES ? { chunkHashes: chunks.digest() } : {}),
  };
}


type Outcome =
  | { kind: "same"; change: PutChange }
  | { kind: "metadata"; change: PutChange }
  | { kind: "differ"; bytesRead: number; unreadable?: true }
  | { kind: "stopped" };
type PutChange = Extract<Change, { op: "put" }>;

const NO_BYTES = new Uint8Array();
const EMPTY_SHA256 = createHash("sha256").digest("hex");

/** Failed lookups in a row after which the target counts as unreachable: against a black-holed endpoint each costs two connect timeouts. */
export const MAX_FAILED_LOOKUPS_IN_A_ROW = 32;

/** The comparison stopped as a whole: the target's objects could not be looked up. */
export class TargetUnreachableError extends Error {
  override name = "TargetUnreachableError";
}

/** Counts lookups that failed in a row (any success starts again): past the limit, no further file is looked up. */
class LookupBreaker {
  #failed = 0;
  #last: unknown;

  get tripped(): boolean {
    return this.#failed >= MAX_FAILED_LOOKUPS_IN_A_ROW;
  }

  succeeded(): void {
    this.#failed = 0;
  }

  failed(error: unknown): void {
    this.#failed += 1;
    this.#last = error;
  }

  error(set: string): TargetUnreachableError {
    return new TargetUnreachableError(
      `comparing set "${set}" with the target stopped: ${this.#failed} lookups of its objects failed in a row (last: ${String(this.#last)}); the files not compared are not counted, and the recovery runs again later`,
    );
  }
}

/** The target's file, asked twice: the agent's S3 client does not retry, and one failed HEAD must not cost more than this file. */
async function lookupOnceRetried(lookup: TargetFileLookup, set: string, path: string, breaker: LookupBreaker): Promise<TargetFile | undefined> {
  try {
    const found = await lookup(set, path).catch(() => lookup(set, path));
    breaker.succeeded();
    return found;
  } catch (error) {
    breaker.failed(error);
    throw error;
  }
}

/**
 * How the source file at path compares with the target's object of it. A file whose object or content cannot be
 * read differs: the scan sends it whole, or names why it cannot. Only a stop, or a target that keeps failing
 * lookups (LookupBreaker), ends the comparison.
 */
async function compareFile(spec: SetSpec, lookup: TargetFileLookup, path: string, breaker: LookupBreaker, signal?: AbortSignal): Promise<Outcome> {
  try {
    return await compareReadable(spec, lookup, path, breaker, signal);
  } catch {
    return signal?.aborted || breaker.tripped ? { kind: "stopped" } : { kind: "differ", bytesRead: 0, unreadable: true };
  }
}

async function compareReadable(spec: SetSpec, lookup: TargetFileLookup, path: string, breaker: LookupBreaker, signal?: AbortSignal): Promise<Outcome> {
  const abs = join(spec.root, path);
  if (signal?.aborted || breaker.tripped) return { kind: "stopped" };
  const before = await statOrGone(abs);
  if (!before?.isFile()) return { kind: "differ", bytesRead: 0 };
  const remote = await lookupOnceRetried(lookup, spec.name, path, breaker);
  // Another size is another content: no need to read the file to know it travels.
  if (!remote || remote.size !== Number(before.size)) return { kind: "differ", bytesRead: 0 };
  if (signal?.aborted) return { kind: "stopped" };
  let local: LocalHash;
  try {
    local = await hashLocal(abs);
  } catch (error) {
    // Gone, or led out of the set's tree (set-files.ts): the scan behind reads what is there.
    if ((error as NodeJS.ErrnoException).code === "ENOENT" || error instanceof OutsideSetError) return { kind: "differ", bytesRead: 0 };
    throw error;
  }
  const after = await statOrGone(abs);
  // Written while read: what was hashed is not what the file holds; the scan reads it as capture does.
  // The ctime and inode too: a rewrite with the mtime put back, or another file renamed over it, while it was read.
  if (!after?.isFile() || after.ctimeNs !== before.ctimeNs || after.ino !== before.ino || after.mtimeNs !== before.mtimeNs || after.size !== before.size || local.size !== Number(after.size)) return { kind: "differ", bytesRead: local.size };
  // Modified moments before the hash: a rewrite of the same size within the timestamp tick would leave the index naming old content.
  if (BigInt(Date.now()) * 1_000_000n - after.mtimeNs < RACY_WINDOW_NS) return { kind: "differ", bytesRead: local.size };
  // Another content travels whole; so does one past the largest ranged delta, as no put could carry its metadata alone.
  if (local.sha256 !== remote.sha256 || local.size !== remote.size || local.size > MAX_RANGED_FILE_BYTES) return { kind: "differ", bytesRead: local.size };
  const mode = Number(after.mode & 0o7777n);
  const mtimeNs = after.mtimeNs.toString();
  const { linkGroup } = linkGroupOf(after);
  const hashes = { ...(local.blockHashes ? { blockHashes: local.blockHashes } : {}), ...(local.chunkHashes ? { chunkHashes: local.chunkHashes } : {}) };
  // The stamp taken before the read: the next scan reads the file only if it moved since.
  const put = { op: "put" as const, path, size: local.size, sha256: local.sha256, content: { bytes: NO_BYTES }, stamp: stampOf(before), ...hashes };
  if (remote.mode === mode && remote.mtimeNs === mtimeNs && remote.linkGroup === linkGroup) {
    return { kind: "same", change: { ...put, mode, mtimeNs, ...(linkGroup ? { linkGroup } : {}) } };
  }
  // A delta carrying no bytes over a base of the same content: the applier rewrites only the object's metadata.
  const delta = { base: local.sha256, blocks: [], ranges: [], contentSha256: EMPTY_SHA256 };
  return { kind: "metadata", change: { ...put, mode, mtimeNs, delta, ...(linkGroup ? { linkGroup } : {}) } };
}

/** Whether the scan would journal the file: the index does not know it, or knows it as something else (an older copy's). */
function unknownOrStale(known: IndexEntry | undefined, stat: EntryStat): boolean {
  return known === undefined || known.kind !== "file" || known.sha256 === null || known.size !== Number(stat.size) || known.mtimeNs !== stat.mtimeNs.toString();
}

/**
 * Compares every source file the index does not know (or knows stale) with the target's live
 * object of it: what the target holds exactly is indexed as it holds it,
 * what differs only in metadata is journaled as a metadata-only put, and the
 * rest is left to the next scan. Journal only behind the resync of the
 * journal's new generation.
 */
export async function seedIndexFromTarget(journal: Journal, spec: SetSpec, lookup: TargetFileLookup, signal?: AbortSignal): Promise<BaselineReport> {
  const set = spec.name;
  const report: BaselineReport = { files: 0, same: 0, metadataOnly: 0, differ: 0, bytesRead: 0, unreadable: 0 };
  let batch: string[] = [];
  const breaker = new LookupBreaker();
  const flush = async () => {
    const paths = batch;
    batch = [];
    const outcomes = await mapConcurrent(paths, COMPARE_CONCURRENCY, (path) => compareFile(spec, lookup, path, breaker, signal));
    const same: PutChange[] = [];
    const metadata: PutChange[] = [];
    for (const outcome of outcomes) {
      // Not compared: the scan sends it whole.
      if (outcome.kind === "stopped") continue;
      report.files += 1;
      if (outcome.kind === "differ") {
        report.differ += 1;
        report.bytesRead += outcome.bytesRead;
        if (outcome.unreadable) report.unreadable += 1;
        continue;
      }
      report.bytesRead += outcome.change.size;
      (outcome.kind === "same" ? same : metadata).push(outcome.change);
    }
    // The index is what the journal has told the target: a file it already holds is entered as if journaled.
    journal.atomically(() => {
      for (const change of same) journal.index.apply(set, change);
    });
    journal.append(set, metadata);
    report.same += same.length;
    report.metadataOnly += metadata.length;
    // What was proven stays indexed; the rest is not compared, and not counted as differing either.
    if (breaker.tripped) throw breaker.error(set);
  };
  const folders = [""];
  // Each folder listed only where it must be: never through a symlink out of the tree (set-files.ts).
  const realRoot = await resolveSetRoot(spec.root);
  // Stopped part way (the agent stops while it starts), what was compared stays indexed: the rest is sent whole.
  for (let dir = folders.pop(); dir !== undefined && !signal?.aborted; dir = folders.pop()) {
    let entries;
    try {
      entries = await readFolder(join(spec.root, dir), dir === "" ? undefined : join(realRoot, dir));
    } catch {
      // Gone or unreadable: the scan behind finds it so and says why.
      continue;
    }
    for (const { name, stat } of entries) {
      const path = dir === "" ? name : `${dir}/${name}`;
      if (!stat || isExcluded(spec, path) || unreplicableName(spec.root, path) !== undefined) continue;
      if (stat.isDirectory()) folders.push(path);
      else if (stat.isFile() && unknownOrStale(journal.index.entry(set, path), stat)) batch.push(path);
      if (batch.length >= BATCH_FILES) await flush();
      // A stop between batches of a large folder ends the comparison there too.
      if (signal?.aborted) break;
    }
  }
  if (batch.length > 0 && !signal?.aborted) await flush();
  return report;
}
