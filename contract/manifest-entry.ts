// Field schemas both sides validate with, and the manifest entry that
// verifications and snapshots list (one line per entry of a set).

import { z } from "zod";
import { setNameProblem, setPathProblem } from "./paths.ts";

export const SetName = z.string().superRefine((value, ctx) => {
  const problem = setNameProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

export const SetPath = z.string().superRefine((value, ctx) => {
  const problem = setPathProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: `${problem}: ${JSON.stringify(value.slice(0, 200))}` });
});

/*
 * The bounds and patterns of the fields below, exported: parseMessage's hand checks of the common message
 * (contract/wire.ts, commonMessage) are built from the same constants. Seq, Mode, MtimeNs, Sha256, Size and LinkGroup
 * are also checked by hand there: a rule added or tightened here must be added there
 * (test/unit/wire-common-messages.test.ts fails on a bound or pattern that differs).
 */
export const MIN_SEQ = 1;
export const MAX_SEQ = Number.MAX_SAFE_INTEGER;
export const MAX_MODE = 0o7777;
export const MAX_SIZE = Number.MAX_SAFE_INTEGER;
/**
 * Nanoseconds since the epoch as BigInt prints them: a file touched before 1970 (old archives, FAT/SMB clocks,
 * `touch -d @-1`) has a negative mtime. A minus sign goes with a non-zero leading digit only ("-0" and "-007" are not
 * what BigInt prints: refused); non-negative values keep the forms they always had (leading zeros included).
 * 28 digits hold any time a stat gives (64-bit seconds: tmpfs and btrfs keep `touch -d @100000000000`, 21 digits).
 */
export const MTIME_NS_PATTERN = /^(?:\d{1,28}|-[1-9]\d{0,27})$/;
export const SHA256_PATTERN = /^[0-9a-f]{64}$/;
export const LINK_GROUP_PATTERN = /^[0-9a-f]{16}$/;

export const Seq = z.number().int().min(MIN_SEQ).max(MAX_SEQ);
export const Mode = z.number().int().min(0).max(MAX_MODE);
export const MtimeNs = z.string().regex(MTIME_NS_PATTERN, "mtimeNs must be a decimal count of nanoseconds (a leading - before 1970)");
export const Sha256 = z.string().regex(SHA256_PATTERN, "sha256 must be 64 lower-case hex digits");
export const Size = z.number().int().min(0).max(MAX_SIZE);
/** Files that were hard links of one another on the source (same device and inode) carry the same group id. */
export const LinkGroup = z.string().regex(LINK_GROUP_PATTERN, "a link group is 16 lower-case hex digits");

/** One line of a verification manifest: an entry of the set as the source holds it. */
export const ManifestEntrySchema = z.object({
  path: SetPath,
  kind: z.enum(["file", "dir", "symlink"]),
  size: Size,
  mode: Mode,
  mtimeNs: MtimeNs,
  sha256: Sha256.optional(),
  link: z.string().optional(),
  /** Block hashes of a large file, base64 of the concatenated 32-byte digests. */
  blocks: z.string().optional(),
  linkGroup: LinkGroup.optional(),
});
export type ManifestEntry = z.infer<typeof ManifestEntrySchema>;
