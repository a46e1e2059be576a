// contract/compression.ts: the one way content is compressed for the wire and back, bounded.

import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { compressed, decompressed } from "../../contract/compression.ts";

describe("decompressed", () => {
  const text = Buffer.from("a line of a text file that compresses well\n".repeat(4000));

  it("gives the bytes back whatever size the caller expects, and refuses more than maxBytes", () => {
    for (const codec of ["zstd", "gzip"] as const) {
      const packed = compressed(text, codec);
      if (!packed) throw new Error(`${codec} saved nothing`);
      // The expected size only sizes zlib's output: a wrong one still gives the bytes, in pieces.
      for (const expected of [undefined, text.length, text.length - 1000, text.length + 1000, 1]) {
        expect(decompressed(packed.data, codec, text.length, expected).equals(text)).toBe(true);
      }
      expect(() => decompressed(packed.data, codec, text.length - 1, text.length - 1)).toThrow(/Cannot create a Buffer larger than|larger than/);
    }
  });

  it("leaves incompressible bytes as they are", () => {
    expect(compressed(randomBytes(4096), "zstd")).toBeUndefined();
  });
});

describe("compressed, fast (a message's pack)", () => {
  it("gives bytes that decompress to the input, for a mix of text and random bytes, and leaves incompressible input as it is", () => {
    const mix = Buffer.concat(Array.from({ length: 64 }, (_, i) => (i % 2 === 0 ? Buffer.from(`line ${i} of a text file\n`.repeat(400)) : randomBytes(9000))));
    for (const codec of ["zstd", "gzip"] as const) {
      const packed = compressed(mix, codec, true);
      if (!packed) throw new Error(`${codec} saved nothing`);
      expect(packed.codec).toBe(codec);
      expect(packed.data.length).toBeLessThan(mix.length);
      expect(decompressed(packed.data, codec, mix.length, mix.length).equals(mix)).toBe(true);
      // The quickest level, not the default: its output differs from the default's.
      expect(packed.data.equals(compressed(mix, codec)?.data ?? Buffer.alloc(0))).toBe(false);
      // Made in one piece the input's size: a much smaller result is copied out of it, not kept as a view.
      const small = compressed(Buffer.alloc(1024 * 1024, 7), codec, true);
      expect(small?.data.length).toBeLessThan(8192);
      expect(small?.data.buffer.byteLength).toBeLessThan(512 * 1024);
      // Larger than its input: more than the one output piece it starts with, and still nothing saved.
      expect(compressed(randomBytes(256 * 1024), codec, true)).toBeUndefined();
    }
  });
});
