// The blocks of a volume snapshot read back from the block store for
// `tidemark restore`: each block's object streamed, and a body cut off
// mid-way (a reset connection) read on with a ranged GET from where it
// stopped, a few times, as a file's content is (restore-content.ts). A
// block's key is its sha256, so the bytes read on are the same object's;
// the whole block is checked against its size and sha256 before it is
// written.

import { createHash } from "node:crypto";
import { blockDataKey } from "../contract/layout.ts";
import type { VolumeBlockEntry } from "../contract/tasks.ts";
import { isTransientAwsError, readBlock, type TargetStore } from "../lambdas/target/index.ts";
import { BODY_RETRIES, readOn } from "./read-on.ts";
import { RestoreError } from "./restore-writer.ts";

/** The bytes of one block of a volume snapshot, checked against its size and sha256. */
export async function readVolumeBlock(store: TargetStore, set: string, entry: VolumeBlockEntry): Promise<Buffer> {
  // A store that cannot stream (only test stores) reads the block whole.
  if (!store.readStream) return readBlock(store, set, entry);
  const key = blockDataKey(set, entry.sha256);
  const missing = () => new RestoreError(`the content of block ${entry.index} (sha256 ${entry.sha256}) is missing from the block store`);
  const readStream = store.readStream.bind(store);
  const first = await readStream(key);
  if (!first) throw missing();
  if (first.size !== entry.size) {
    first.discard();
    throw new RestoreError(`the content found for block ${entry.index} holds ${first.size} bytes, the snapshot's ${entry.size}`);
  }
  const chunks: Uint8Array[] = [];
  let got = 0;
  for await (const chunk of readOn(first, {
    length: entry.size,
    reopen: async (read) => {
      const rest = await readStream(key, { offset: read, length: entry.size - read });
      if (!rest) throw missing();
      return rest;
    },
    isFinal: (error) => error instanceof RestoreError,
    tooMuch: () => new RestoreError(`the store sent more than the ${entry.size} bytes of block ${entry.index}`),
  })) {
    chunks.push(chunk);
    got += chunk.length;
  }
  const body = Buffer.concat(chunks, got);
  if (body.length !== entry.size || createHash("sha256").update(body).digest("hex") !== entry.sha256) {
    throw new RestoreError(`the content found for block ${entry.index} does not match the snapshot's sha256`);
  }
  return body;
}

/**
 * A block read whole (an EBS snapshot's GetSnapshotBlock), read again when it fails as a cut-off body or a dropped
 * connection does, up to BODY_RETRIES times; a RestoreError (a wrong size or checksum) is not retried.
 */
export async function retryCutOff<T>(read: () => Promise<T>): Promise<T> {
  for (let retries = 0; ; retries++) {
    try {
      return await read();
    } catch (error) {
      if (error instanceof RestoreError || retries >= BODY_RETRIES || !isTransientAwsError(error)) throw error;
    }
  }
}
