// A small file read whole in three calls (open, reads, close): fs.readFile
// first asks fstat for the size the capture's lstat has just given, and each
// call is a hand-off to libuv's thread pool, most of a small file's capture.

import { openInSet } from "./set-files.ts";

/**
 * The file's bytes, read into a buffer of the size its stat gave plus a byte. A read may return fewer bytes than asked
 * without being at the end (FUSE direct_io, network file systems), so reads go on until one returns none, the
 * stat's size is read, or the buffer is full: fewer bytes (a file that shrank) are what was read, and the caller's
 * stat after the read tells whether they are the whole file (as it tells for a file that grows once the stat's bytes
 * are read: no read past them, which cost every small file's capture a fourth call); a file found grown past the stat
 * is read again whole. Stopping at the stat's size trusts the stat to agree with the reads, as on a local file
 * system; where a read came back short, the stat may be a cache's (a FUSE or network file system's attributes, stale
 * while a remote writer grows the file), so the reads go on to the end.
 */
export async function readSmallFile(path: string, statSize: number): Promise<Buffer> {
  const handle = await openInSet(path);
  try {
    const buffer = Buffer.allocUnsafe(statSize + 1);
    let filled = 0;
    let short = false;
    while (filled < buffer.length) {
      const asked = buffer.length - filled;
      const { bytesRead } = await handle.read(buffer, filled, asked, filled);
      if (bytesRead === 0) break;
      filled += bytesRead;
      if (filled < statSize && bytesRead < asked) short = true;
      if (filled === statSize && !short) break;
    }
    if (filled <= statSize) return buffer.subarray(0, filled);
    // Grown past the stat: read whole, through the same handle (never by its path again: set-files.ts).
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}
