// A file's bytes compressed for the wire, inline in a message or in its pack
// (packed-content.ts): one rule for both, and one bounded way back.

import { constants, gunzipSync, gzipSync, zstdCompressSync, zstdDecompressSync } from "node:zlib";

export const COMPRESSIONS = ["zstd", "gzip", "none"] as const;
export type Compression = (typeof COMPRESSIONS)[number];
export type Codec = Exclude<Compression, "none">;

/** Content shorter than this is not worth a compressor's header. */
const MIN_COMPRESS_BYTES = 64;
/** zlib's smallest output piece. */
const MIN_CHUNK_BYTES = 64;

/**
 * The bytes compressed with `compression`, or undefined when that is off or saves nothing. `fast` (a message's pack:
 * megabytes of files at once) takes the codec's quickest level and makes the output in one piece: an 8 MiB pack of
 * the bench's mix compressed in ~5 ms of CPU instead of ~60 at zstd's default level, 0.2 % larger (bench/notes.md).
 */
export function compressed(bytes: Uint8Array, compression: Compression, fast = false): { codec: Codec; data: Buffer } | undefined {
  if (compression === "none" || bytes.length < MIN_COMPRESS_BYTES) return undefined;
  // One output piece instead of 16 KiB pieces joined at the end (a copy of the whole output).
  const whole = fast ? { chunkSize: bytes.length + MIN_CHUNK_BYTES } : {};
  // The size given up front sizes zstd's tables to the file (the frame is the same byte for byte): a small file
  // compressed ~2x faster when incompressible, where allocating tables for any size dominated.
  const data =
    compression === "zstd"
      ? zstdCompressSync(bytes, { pledgedSrcSize: bytes.length, ...whole, ...(fast ? { params: { [constants.ZSTD_c_compressionLevel]: 1 } } : {}) })
      : gzipSync(bytes, { ...whole, ...(fast ? { level: 1 } : {}) });
  if (data.length >= bytes.length) return undefined;
  // The one piece is as large as the input: a result much smaller would keep all of it alive.
  return { codec: compression, data: fast && data.buffer.byteLength > 2 * data.length ? Buffer.from(data) : data };
}

/**
 * The bytes `compressed` made, at most maxBytes of them; throws zlib's error when they do not decompress. With
 * `expectedBytes` (a size the caller checks), the output is made in one piece of that size (plus the byte that tells
 * zlib it is done) instead of 16 KiB pieces joined at the end.
 */
export function decompressed(data: Uint8Array, codec: Codec, maxBytes: number, expectedBytes?: number): Buffer {
  const options = { maxOutputLength: maxBytes, ...(expectedBytes !== undefined ? { chunkSize: Math.max(MIN_CHUNK_BYTES, Math.min(expectedBytes, maxBytes) + 1) } : {}) };
  return codec === "zstd" ? zstdDecompressSync(data, options) : gunzipSync(data, options);
}
