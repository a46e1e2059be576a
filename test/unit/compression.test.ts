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
