// The link target of a symlink object on the target, wherever it is kept
// (contract/link-meta.ts): in its metadata, or, for one too long for S3's
// metadata, in its body, proved against the SHA-256 its metadata names.

import { isUtf8 } from "node:buffer";
import { createHash } from "node:crypto";
import type { EntryMeta } from "../contract/layout.ts";
import type { TargetStore } from "./store/store.ts";

/**
 * The target of the symlink object at key whose metadata is meta (read at
 * versionId when given), or undefined when neither its metadata nor its body
 * holds one: a body that is gone, not the target its metadata hashes, or not
 * UTF-8 names no target.
 */
export async function symlinkTarget(store: TargetStore, key: string, meta: EntryMeta, versionId?: string): Promise<string | undefined> {
  if (meta.linkTarget !== undefined) return meta.linkTarget;
  if (!meta.linkInBody || meta.sha256 === undefined) return undefined;
  const object = await store.get(key, versionId);
  if (!object || createHash("sha256").update(object.body).digest("hex") !== meta.sha256 || !isUtf8(object.body)) return undefined;
  return object.body.toString("utf8");
}
