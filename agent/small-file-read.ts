// A small file read whole in three calls (open, one read, close): fs.readFile
// first asks fstat for the size the capture's lstat has just given, and each
// call is a hand-off to libuv's thread pool, most of a small file's capture.

import { open, readFile } from "node:fs/promises";

/**
 * The file's bytes, read in one read of the size its stat gave plus a byte: fewer bytes (a short read, a file that
 * shrank) are what was read, and the caller's stat after the read tells whether they are the whole file; a file that
 * grew past the stat is read again whole.
 */
export async function readSmallFile(path: string, statSize: number): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.allocUnsafe(statSize + 1);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    if (bytesRead <= statSize) return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
  return readFile(path);
}
