// `tidemark restore` of a volume set: the image as it was at a marker, rebuilt
// from the block store (a tidemark snapshot; a block read cut off mid-way is
// read on from where it stopped, restore-blocks.ts), or read back from an EBS
// snapshot through the EBS direct APIs (a block cut off is read again). Every block is checked against its
// sha256. Into a file: written under a temp name, synced, renamed into place;
// blocks of zeros are left as holes. Onto a device (--force): written in place,
// zeros included.

import { createHash } from "node:crypto";
import { lstat, open, rename, rm, type FileHandle } from "node:fs/promises";
import { GetSnapshotBlockCommand, ListSnapshotBlocksCommand, type EBSClient } from "@aws-sdk/client-ebs";
import { mapConcurrent } from "../contract/async.ts";
import { writeFully } from "./full-write.ts";
import type { SnapshotSummary } from "../contract/tasks.ts";
import { BLOCK_SIZE, blockCount, blockLength } from "../contract/wire.ts";
import { readBlockManifest, type TargetStore } from "../lambdas/target/index.ts";
import { readVolumeBlock, retryCutOff } from "./restore-blocks.ts";
import type { Progress } from "./operations.ts";
import { RestoreError } from "./restore.ts";

export interface VolumeRestoreResult {
  readonly snapshot: string;
  readonly to: string;
  /** Bytes of the restored volume. */
  readonly size: number;
  /** Blocks holding data that were written. */
  readonly blocks: number;
  readonly bytes: number;
  readonly source: "block-store" | "ebs";
}

export interface VolumeRestoreOptions {
  /** Write over an existing file or onto a block device. */
  readonly force?: boolean;
  readonly onProgress?: (progress: Progress) => void;
}

/** Blocks fetched at once. */
const RESTORE_CONCURRENCY = 8;
const GIB = 1024 ** 3;

/** Where the blocks go: a temp file renamed into place at the end, or a device written in place. */
interface Destination {
  readonly handle: FileHandle;
  readonly device: boolean;
  finish(): Promise<void>;
  abandon(): Promise<void>;
}

async function openDestination(to: string, size: number, force: boolean): Promise<Destination> {
  const existing = await lstat(to).catch(() => undefined);
  if (existing && !force) throw new RestoreError(`${to} exists; restore to a new file, or pass --force to replace it`);
  if (existing?.isDirectory()) throw new RestoreError(`${to} is a folder; a volume restores to a file or a block device`);
  if (existing?.isBlockDevice()) {
    const handle = await open(to, "r+");
    return { handle, device: true, finish: () => handle.close(), abandon: () => handle.close() };
  }
  const temp = `${to}.tidemark-restore`;
  const handle = await open(temp, "w", 0o600);
  // Sparse: blocks of zeros are never written.
  await handle.truncate(size);
  return {
    handle,
    device: false,
    async finish() {
      await handle.sync();
      await handle.close();
      await rename(temp, to);
    },
    async abandon() {
      await handle.close();
      await rm(temp, { force: true });
    },
  };
}

/** Writes blocks (index -> bytes, fetched by `fetch`) into `to`; zeros for every other block when `to` is a device. */
export async function writeVolume(
  to: string,
  size: number,
  indexes: readonly number[],
  fetch: (index: number) => Promise<Buffer>,
  options: VolumeRestoreOptions,
): Promise<{ bytes: number }> {
  const destination = await openDestination(to, size, options.force === true);
  let bytes = 0;
  let done = 0;
  const report = () => options.onProgress?.({ phase: "restore", files: done, totalFiles: indexes.length, bytes, totalBytes: indexes.length * BLOCK_SIZE, unit: "blocks" });
  try {
    if (destination.device) {
      const listed = new Set(indexes);
      const zeros = Buffer.alloc(BLOCK_SIZE);
      for (let index = 0; index < blockCount(size); index++) {
        if (!listed.has(index)) await writeFully(destination.handle, zeros, 0, blockLength(size, index), index * BLOCK_SIZE, to);
      }
    }
    await mapConcurrent(indexes, RESTORE_CONCURRENCY, async (index) => {
      const block = await fetch(index);
      // An EBS block past the end of a smaller image is cut to the volume's size.
      const length = Math.min(block.length, blockLength(size, index));
      await writeFully(destination.handle, block, 0, length, index * BLOCK_SIZE, to);
      bytes += length;
      done += 1;
      report();
    });
    await destination.finish();
  } catch (error) {
    await destination.abandon();
    throw error;
  }
  report();
  return { bytes };
}

/** Restores a tidemark snapshot of a volume set from the block store. */
export async function restoreVolumeSnapshot(store: TargetStore, summary: SnapshotSummary, to: string, options: VolumeRestoreOptions = {}): Promise<VolumeRestoreResult> {
  if (!summary.volume) throw new RestoreError(`snapshot ${summary.id} is of a file set: restore it into a folder`);
  const entries = await readBlockManifest(store, summary);
  const byIndex = new Map(entries.map((e) => [e.index, e]));
  const size = summary.volume.size;
  const { bytes } = await writeVolume(
    to,
    size,
    entries.map((e) => e.index),
    async (index) => {
      const entry = byIndex.get(index);
      if (!entry) throw new RestoreError(`internal: block ${index} is not in the manifest`);
      return readVolumeBlock(store, summary.set, entry);
    },
    options,
  );
  return { snapshot: summary.id, to, size, blocks: entries.length, bytes, source: "block-store" };
}

/** Looks like an EBS snapshot id (snap- and 8 or 17 hex digits), not a tidemark one. */
export function isEbsSnapshotId(id: string): boolean {
  return /^snap-(?:[0-9a-f]{8}|[0-9a-f]{17})$/.test(id);
}

/** Restores an EBS snapshot through ListSnapshotBlocks and GetSnapshotBlock: the whole volume, VolumeSize GiB. */
export async function restoreEbsSnapshot(ebs: EBSClient, snapshotId: string, to: string, options: VolumeRestoreOptions = {}): Promise<VolumeRestoreResult> {
  const tokens = new Map<number, string>();
  let volumeSizeGiB = 0;
  let next: string | undefined;
  do {
    const page = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: snapshotId, ...(next ? { NextToken: next } : {}) }));
    volumeSizeGiB = page.VolumeSize ?? volumeSizeGiB;
    if (page.BlockSize !== undefined && page.BlockSize !== BLOCK_SIZE) throw new RestoreError(`EBS snapshot ${snapshotId} has ${page.BlockSize}-byte blocks, expected ${BLOCK_SIZE}`);
    for (const block of page.Blocks ?? []) if (block.BlockIndex !== undefined && block.BlockToken) tokens.set(block.BlockIndex, block.BlockToken);
    next = page.NextToken;
  } while (next);
  if (volumeSizeGiB < 1) throw new RestoreError(`EBS snapshot ${snapshotId} reports no volume size`);
  const size = volumeSizeGiB * GIB;
  const indexes = [...tokens.keys()].sort((a, b) => a - b);
  const { bytes } = await writeVolume(
    to,
    size,
    indexes,
    // A body cut off mid-way is read again (the SDK retries only until the answer's head).
    (index) =>
      retryCutOff(async () => {
        const got = await ebs.send(new GetSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: index, BlockToken: tokens.get(index) }));
        const data = Buffer.from((await got.BlockData?.transformToByteArray()) ?? new Uint8Array());
        if (data.length !== BLOCK_SIZE) throw new RestoreError(`block ${index} of EBS snapshot ${snapshotId} is ${data.length} bytes, expected ${BLOCK_SIZE}`);
        const checksum = createHash("sha256").update(data).digest("base64");
        if (got.Checksum && got.Checksum !== checksum) throw new RestoreError(`block ${index} of EBS snapshot ${snapshotId} does not match its checksum`);
        return data;
      }),
    options,
  );
  return { snapshot: snapshotId, to, size, blocks: indexes.length, bytes, source: "ebs" };
}
