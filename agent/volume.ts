// Volume sets: a block device or disk image replicated as 512 KiB blocks (EBS's
// block size). A scan reads the volume, hashes each block, and journals the
// blocks whose hash differs from the index, with their bytes as read: a block
// of zeros travels as `zero`. At a marker the scan reads everything; between
// markers an image file that did not change since the last complete read
// (same size, mtime and inode) is not read again.

import { readFileSync, watch, type FSWatcher } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { createHash } from "node:crypto";
import { BLOCK_SIZE, blockCount, blockLength, MAX_VOLUME_BYTES, zeroBlockSha256 } from "../contract/wire.ts";
import { throwIfInterrupted } from "./interrupt.ts";
import { changeBytes, type Change, type Journal } from "./journal.ts";
import type { ScanReport } from "./scan.ts";
import type { SetSpec } from "./set-spec.ts";
import type { SetWatcher, WatchHandlers } from "./watcher.ts";
import { processEventQueue } from "./event-queue.ts";

export class VolumeError extends Error {
  override name = "VolumeError";
}

export interface VolumeScanOptions {
  /** Read every block even when the image file looks unchanged (a marker's barrier). */
  readonly full?: boolean;
  readonly onProgress?: (report: Readonly<ScanReport>) => void;
  /** Checked between chunks, with the bytes read but not yet journaled: true stops the scan early (the journal is full); the next scan goes on from the index. */
  readonly shouldStop?: (unjournaledBytes: number) => boolean;
  /** Checked before each block: once aborted (the agent stops while it starts), the scan journals what it read and throws StartInterruptedError. */
  readonly signal?: AbortSignal;
}

/** Blocks journaled per transaction: 32 MiB of content at most in memory. */
const APPEND_BLOCKS = 64;
/** Index entries read at a time. */
const INDEX_CHUNK = 1024;
/** A file modified this recently may change again within its timestamp's resolution: its stamp is not trusted. */
const RACY_MS = 2_000;

/** Major and minor number of a device id (Linux's encoding). */
function deviceNumbers(rdev: number): string {
  const major = (rdev >>> 8) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >>> 12) & 0xfff00);
  return `${major}:${minor}`;
}

/** Bytes of a block device, from sysfs; undefined where that is not readable. */
function deviceSize(rdev: number): number | undefined {
  try {
    const sectors = Number(readFileSync(`/sys/dev/block/${deviceNumbers(rdev)}/size`, "utf8").trim());
    return Number.isSafeInteger(sectors) ? sectors * 512 : undefined;
  } catch {
    return undefined;
  }
}

interface OpenVolume {
  readonly handle: FileHandle;
  /** Bytes replicated: the configured size, else the device's or file's. */
  readonly size: number;
  /** Bytes that can be read; past them the volume reads as zeros. */
  readonly readable: number;
  /** size:mtime:inode of an image file; undefined for a device (its writes do not move its mtime). */
  readonly stamp: string | undefined;
  readonly mtimeMs: number;
}

async function openVolume(spec: SetSpec): Promise<OpenVolume> {
  let handle: FileHandle;
  try {
    handle = await open(spec.root, "r");
  } catch (error) {
    throw new VolumeError(`set "${spec.name}": cannot open ${spec.root}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  try {
    const st = await handle.stat({ bigint: true });
    let readable: number;
    if (st.isFile()) readable = Number(st.size);
    else if (st.isBlockDevice()) {
      const size = deviceSize(Number(st.rdev));
      if (size === undefined && spec.volume?.sizeBytes === undefined) {
        throw new VolumeError(`set "${spec.name}": cannot tell the size of ${spec.root}; give "sizeGiB" in the set's config`);
      }
      readable = size ?? spec.volume?.sizeBytes ?? 0;
    } else throw new VolumeError(`set "${spec.name}": ${spec.root} is neither a block device nor a regular file`);
    const size = spec.volume?.sizeBytes ?? readable;
    if (readable > size) throw new VolumeError(`set "${spec.name}": ${spec.root} holds ${readable} bytes, more than the set's sizeGiB (${size} bytes)`);
    if (size === 0) throw new VolumeError(`set "${spec.name}": ${spec.root} is empty`);
    if (size > MAX_VOLUME_BYTES) throw new VolumeError(`set "${spec.name}": ${spec.root} is larger than 64 TiB, EBS's largest volume`);
    const stamp = st.isFile() ? `${st.size}:${st.mtimeNs}:${st.ino}` : undefined;
    return { handle, size, readable, stamp, mtimeMs: Number(st.mtimeMs) };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** Reads block `index` into buffer (zeros past what can be read); returns the block's bytes. */
async function readBlock(volume: OpenVolume, index: number, buffer: Buffer): Promise<Buffer> {
  const length = blockLength(volume.size, index);
  const block = buffer.subarray(0, length);
  const offset = index * BLOCK_SIZE;
  const wanted = Math.max(0, Math.min(length, volume.readable - offset));
  let read = 0;
  while (read < wanted) {
    const { bytesRead } = await volume.handle.read(block, read, wanted - read, offset + read);
    // The file shrank while it was read: the rest reads as zeros, and the next scan sees the new size.
    if (bytesRead === 0) break;
    read += bytesRead;
  }
  block.fill(0, read);
  return block;
}

function isZero(block: Buffer): boolean {
  // Compares 8 bytes at a time where the buffer is aligned (it is: a fresh allocation).
  const words = new BigUint64Array(block.buffer, block.byteOffset, Math.floor(block.length / 8));
  for (const word of words) if (word !== 0n) return false;
  for (let i = words.length * 8; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * Journals the blocks of a volume set that differ from the index. Blocks the
 * index does not know count as zeros (the target's are, after a resync). A
 * size different from the journaled one journals the last block, which
 * carries the new size to the target.
 */
export async function volumeScan(journal: Journal, spec: SetSpec, options: VolumeScanOptions = {}): Promise<ScanReport> {
  const report: ScanReport = { entries: 0, changes: 0, bytes: 0, skipped: [] };
  const started = Date.now();
  const volume = await openVolume(spec);
  try {
    const known = journal.volumes.volume(spec.name);
    if (!options.full && volume.stamp !== undefined && known?.stamp === volume.stamp && known.size === volume.size) return report;
    const count = blockCount(volume.size);
    const resized = known?.size !== volume.size;
    const buffer = Buffer.allocUnsafe(BLOCK_SIZE);
    let pending: Change[] = [];
    const flush = () => {
      journal.append(spec.name, pending);
      report.changes += pending.length;
      report.bytes += pending.reduce((sum, change) => sum + changeBytes(change), 0);
      pending = [];
    };
    for (let from = 0; from < count; from += INDEX_CHUNK) {
      if (options.shouldStop?.(pending.reduce((sum, change) => sum + changeBytes(change), 0))) {
        report.stopped = true;
        break;
      }
      const to = Math.min(count, from + INDEX_CHUNK);
      const hashes = journal.volumes.blocks(spec.name, from, to);
      for (let index = from; index < to; index++) {
        // A large image takes long to read: a stop gives way at once, the blocks not read wait for the next scan.
        if (options.signal?.aborted) flush();
        throwIfInterrupted(options.signal, "reading the volume");
        const block = await readBlock(volume, index, buffer);
        report.entries += 1;
        const zero = isZero(block);
        const sha256 = zero ? zeroBlockSha256(block.length) : createHash("sha256").update(block).digest("hex");
        const before = hashes.get(index) ?? zeroBlockSha256(block.length);
        if (sha256 === before && !(resized && index === count - 1)) continue;
        // The bytes as read now: later writes to the volume cannot leak into what is journaled.
        pending.push({ op: "block", index, volumeSize: volume.size, sha256, content: zero ? { zero: true } : { bytes: Buffer.from(block) } });
        if (pending.length >= APPEND_BLOCKS) flush();
      }
      flush();
      options.onProgress?.(report);
    }
    if (!report.stopped && volume.stamp !== undefined) {
      // An image written within the timestamp's resolution of this read may hide a write behind the same stamp.
      journal.volumes.setStamp(spec.name, started - volume.mtimeMs > RACY_MS ? volume.stamp : null);
    }
    return report;
  } finally {
    await volume.handle.close();
  }
}

/**
 * Watches an image file for writes (a hint: the scan decides what changed).
 * A device's writes raise no events: it is scanned on an interval instead.
 */
export function watchVolume(spec: SetSpec, handlers: WatchHandlers): SetWatcher {
  let watcher: FSWatcher | undefined;
  try {
    watcher = watch(spec.root, { persistent: false }, () => {
      // Its events share the kernel queue with the trees' (event-queue.ts).
      processEventQueue.event();
      handlers.hint("");
    });
    watcher.on("error", (error) => handlers.error(error));
  } catch (error) {
    handlers.error(error as Error);
  }
  return {
    async close() {
      watcher?.close();
    },
  };
}
