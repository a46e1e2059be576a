// Packed content (wire format v1, optional): when a set's backlog is larger
// than a message can carry inline, the agent writes the small files' bytes of
// a message into one staging object, the message's pack, and each record
// names its slice. A message then carries records' metadata only, so one
// message holds a thousand files instead of fifty: the queue, the applier's
// per-message work and the source host's round trips are paid per thousand.
// The pack's SHA-256 is in the signed message, each record's in its record.

import { z } from "zod";
import { Sha256 } from "./manifest-entry.ts";
import { compressed, type Compression } from "./compression.ts";

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

/** A file's bytes as they go into a pack: compressed only when that saves space (as inline content). */
export function encodePacked(bytes: Uint8Array, compression: Compression): { encoding: PackedContent["encoding"]; data: Uint8Array } {
  const packed = compressed(bytes, compression);
  return packed ? { encoding: packed.codec, data: packed.data } : { encoding: "raw", data: bytes };
}
