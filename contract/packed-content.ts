// Packed content (wire format v1, optional): when a set's backlog is larger
// than a message can carry inline, the agent writes the small files' bytes of
// a message into one staging object, the message's pack, and each record
// names its slice. A message then carries records' metadata only, so one
// message holds a thousand files instead of fifty: the queue, the applier's
// per-message work and the source host's round trips are paid per thousand.
// The pack's SHA-256 is in the signed message, each record's in its record.

import { z } from "zod";
import { Sha256 } from "./manifest-entry.ts";

/** Largest pack: the applier holds it in memory while it applies the message. */
export const MAX_PACK_BYTES = 8 * 1024 * 1024;

/** How a record's slice of the pack is compressed, and how a whole pack is (each also checked by hand in contract/wire.ts). */
export const PACKED_ENCODINGS = ["raw", "zstd", "gzip"] as const;
export const PACK_ENCODINGS = ["zstd", "gzip"] as const;

/**
 * A record's bytes in the message's pack: [offset, offset + length), compressed as `encoding` says.
 * Also checked by hand in commonContent (contract/wire.ts): a rule added or tightened here must be added there.
 */
export const PackedContent = z.object({
  kind: z.literal("packed"),
  encoding: z.enum(PACKED_ENCODINGS),
  offset: z.number().int().min(0).max(MAX_PACK_BYTES),
  length: z.number().int().min(0).max(MAX_PACK_BYTES),
});
export type PackedContent = z.infer<typeof PackedContent>;

/**
 * The message's pack: a staging object at stagingKey(set, first seq of the message, sha256), `size` bytes with that
 * SHA-256. With `encoding` (newer agents) the object is the pack compressed as a whole, and records' slices index its
 * `decodedSize` decompressed bytes: one compressor's run per pack instead of one per file, each side.
 * Also checked by hand in commonPack (contract/wire.ts): a rule added or tightened here (the refinement too) must be
 * added there.
 */
export const MessagePack = z
  .object({
    size: z.number().int().min(1).max(MAX_PACK_BYTES),
    sha256: Sha256,
    encoding: z.enum(PACK_ENCODINGS).optional(),
    decodedSize: z.number().int().min(1).max(MAX_PACK_BYTES).optional(),
  })
  .refine((pack) => (pack.encoding === undefined) === (pack.decodedSize === undefined), "a pack's encoding and decodedSize go together");
export type MessagePack = z.infer<typeof MessagePack>;

/** How many bytes the records' slices index: the decompressed pack when it is compressed whole. */
export function packedBytes(pack: MessagePack | undefined): number {
  return pack?.decodedSize ?? pack?.size ?? 0;
}
