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

export const Seq = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
export const Mode = z.number().int().min(0).max(0o7777);
export const MtimeNs = z.string().regex(/^\d{1,20}$/, "mtimeNs must be a decimal count of nanoseconds");
export const Sha256 = z.string().regex(/^[0-9a-f]{64}$/, "sha256 must be 64 lower-case hex digits");
export const Size = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
/** Files that were hard links of one another on the source (same device and inode) carry the same group id. */
export const LinkGroup = z.string().regex(/^[0-9a-f]{16}$/, "a link group is 16 lower-case hex digits");

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
