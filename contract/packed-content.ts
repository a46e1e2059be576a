// Packed content (wire format v1, optional): when a set's backlog is larger
// than a message can carry inline, the agent writes the small files' bytes of
// a message into one staging object, the message's pack, and each record
// names its slice. A message then carries records' metadata only, so one
// message holds a thousand files instead of fifty: the queue, the applier's
// per-message work and the source host's round trips are paid per thousand.
// The pack's SHA-256 is in the signed message, each record's in its record.

import { zstdCompressSync, gzipSync } from "node:zlib";
import { z } from "zod";
import { Sha256 } from "./manifest-entry.ts";

/** Largest pack: the applier holds it in memory while it applies the message. */
export const MAX_PACK_BYTES = 8 * 1024 * 1024;

/** A record's bytes in the message's pack: [offset, offset + length), compressed as `encoding` says. */
export const PackedContent = z.object({
  kind: z.literal("packed"),
  encoding: z.enum(["raw", "zstd", "gzip"]),
  offset: z.number().int().min(0).max(MAX_PACK_BYTES),
  length: z.number().int().min(0).max(MAX_PACK_BYTES),
});
export type PackedContent = z.infer<typeof PackedContent>;

/** The message's pack: a staging object at stagingKey(set, first seq of the message, sha256). */
export const MessagePack = z.object({ size: z.number().int().min(1).max(MAX_PACK_BYTES), sha256: Sha256 });
export type MessagePack = z.infer<typeof MessagePack>;

/** Content shorter than this is not worth a compressor's header (as inline content). */
const MIN_COMPRESS_BYTES = 64;

/** A file's bytes as they go into a pack: compressed only when that saves space. */
export function encodePacked(bytes: Uint8Array, compression: "zstd" | "gzip" | "none"): { encoding: PackedContent["encoding"]; data: Uint8Array } {
  if (compression === "none" || bytes.length < MIN_COMPRESS_BYTES) return { encoding: "raw", data: bytes };
  // The size given up front sizes zstd's tables to the file (the frame is the same byte for byte): a small file
  // compressed ~2x faster when incompressible, where allocating tables for any size dominated.
  const packed = compression === "zstd" ? zstdCompressSync(bytes, { pledgedSrcSize: bytes.length }) : gzipSync(bytes);
  return packed.length >= bytes.length ? { encoding: "raw", data: bytes } : { encoding: compression, data: packed };
}
