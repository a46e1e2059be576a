// A restore's read of an object's bytes that survives a body cut off mid-way
// (a reset connection): the rest is asked for again from where it stopped, a
// few times. File contents (restore-content.ts) and volume blocks
// (restore-blocks.ts) read this way.

import type { ObjectStream } from "../lambdas/target/index.ts";

/** How many times a body cut off mid-way is read on from where it stopped. */
export const BODY_RETRIES = 3;

export interface ReadOn {
  /** The bytes asked for: more is refused with `tooMuch()`. */
  readonly length: number;
  /** Opens the rest, from `got` bytes into the range; throws when it cannot. */
  reopen(got: number): Promise<ObjectStream>;
  /** An error that reading on cannot mend (a wrong size or checksum): thrown at once. */
  isFinal(error: unknown): boolean;
  tooMuch(): Error;
}

/** The range's bytes as they arrive, `first` read first; the caller checks it got `length` of them. */
export async function* readOn(first: ObjectStream, read: ReadOn): AsyncGenerator<Uint8Array> {
  let got = 0;
  let retries = 0;
  let stream = first;
  for (;;) {
    try {
      for await (const chunk of stream.body) {
        got += chunk.length;
        if (got > read.length) throw read.tooMuch();
        yield chunk;
      }
      return;
    } catch (error) {
      if (read.isFinal(error) || retries >= BODY_RETRIES || got >= read.length) throw error;
      retries += 1;
    } finally {
      stream.discard();
    }
    stream = await read.reopen(got);
  }
}
