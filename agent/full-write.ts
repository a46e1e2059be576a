// Writes that take every byte or fail. A write or writev may return fewer
// bytes than it was given without an error (a full disk, a quota or a
// file-size limit reached part way): the rest is written again from where it
// stopped, and a write that makes no progress fails naming the file, so a
// restore never puts a truncated file in place and reports success.

/** The part of a FileHandle a full write needs. */
export interface PositionalWriter {
  write(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  writev(buffers: Uint8Array[], position: number): Promise<{ bytesWritten: number }>;
}

export class ShortWriteError extends Error {
  override name = "ShortWriteError";
}

function refused(what: string, left: number, position: number): ShortWriteError {
  return new ShortWriteError(`${what}: the disk took none of the last ${left} bytes at offset ${position} (full disk, quota or file-size limit?)`);
}

/** Writes all of buffers at position on; returns the bytes written (their total). */
export async function writevFully(handle: PositionalWriter, buffers: readonly Uint8Array[], position: number, what: string): Promise<number> {
  let rest = buffers.filter((b) => b.length > 0);
  let at = position;
  let left = rest.reduce((sum, b) => sum + b.length, 0);
  const total = left;
  while (left > 0) {
    const { bytesWritten } = await handle.writev(rest, at);
    if (bytesWritten <= 0) throw refused(what, left, at);
    at += bytesWritten;
    left -= bytesWritten;
    rest = notWritten(rest, bytesWritten);
  }
  return total;
}

/** What is left of buffers after the first `written` bytes of them went to disk (the buffers and the part of one skipped). */
export function notWritten(buffers: readonly Uint8Array[], written: number): Uint8Array[] {
  let skip = written;
  const next: Uint8Array[] = [];
  for (const b of buffers) {
    if (skip >= b.length) skip -= b.length;
    else {
      next.push(skip > 0 ? b.subarray(skip) : b);
      skip = 0;
    }
  }
  return next;
}

/** Writes buffer[offset, offset + length) at position on. */
export async function writeFully(handle: PositionalWriter, buffer: Uint8Array, offset: number, length: number, position: number, what: string): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesWritten } = await handle.write(buffer, offset + done, length - done, position + done);
    if (bytesWritten <= 0) throw refused(what, length - done, position + done);
    done += bytesWritten;
  }
}
