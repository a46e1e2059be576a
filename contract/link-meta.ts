// Where a symlink object keeps its link target. S3 limits an object's user
// metadata to 2 KB (the UTF-8 bytes of every key and value), and a target may
// be 4,095 bytes, up to three times that URI-encoded (metadata travels in
// HTTP headers, so it is kept ASCII). A target whose encoding fits a budget
// well inside the limit (room for the entry's other fields and a rename's
// marks) goes in the metadata, read with the object's HEAD; a longer one is
// read from the object's body, which every symlink object has always held
// (the target's UTF-8 bytes), and a flag in the metadata says so.

/** S3's limit on an object's user metadata: the UTF-8 bytes of every key (without x-amz-meta-) and value. */
export const USER_METADATA_LIMIT_BYTES = 2048;
/** The most bytes of URI-encoded link target kept in metadata. */
export const LINK_METADATA_BUDGET_BYTES = 1024;
/** The URI-encoded target, when it fits the budget. */
export const LINK_TARGET_KEY = "tidemark-link";
/** "1": the target is the object's body (too long for the metadata). */
export const LINK_IN_BODY_KEY = "tidemark-link-in-body";

/** The size S3 counts against USER_METADATA_LIMIT_BYTES. */
export function userMetadataBytes(meta: Readonly<Record<string, string>>): number {
  let total = 0;
  for (const [key, value] of Object.entries(meta)) total += Buffer.byteLength(key) + Buffer.byteLength(value);
  return total;
}

/** The metadata naming a symlink's target: the target itself when its encoding fits the budget, else the flag. */
export function linkTargetMetadata(target: string): Record<string, string> {
  const encoded = encodeURIComponent(target);
  return encoded.length <= LINK_METADATA_BUDGET_BYTES ? { [LINK_TARGET_KEY]: encoded } : { [LINK_IN_BODY_KEY]: "1" };
}

/**
 * The metadata of a copy of an object (a rename): a target kept in the
 * metadata gives way to the flag when the whole would pass S3's limit (an
 * object written before the budget, its target near the limit, and the
 * rename's marks added). The copy keeps the body, which holds the target.
 */
export function withinMetadataLimit(meta: Readonly<Record<string, string>>): Record<string, string> {
  if (meta[LINK_TARGET_KEY] === undefined || userMetadataBytes(meta) <= USER_METADATA_LIMIT_BYTES) return { ...meta };
  return { ...Object.fromEntries(Object.entries(meta).filter(([key]) => key !== LINK_TARGET_KEY)), [LINK_IN_BODY_KEY]: "1" };
}
