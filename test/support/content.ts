// What tests say of content: its SHA-256, as records, snapshot entries and the target's preserved keys name it, and
// a file's snapshot entry from its bytes (what restore tests hand the writer).

import { createHash } from "node:crypto";
import type { SnapshotEntry } from "../../contract/tasks.ts";

/** The hex SHA-256 of bytes (a string as its UTF-8). */
export const sha256Of = (bytes: Uint8Array | string): string => createHash("sha256").update(bytes).digest("hex");

/** A regular file's entry holding body (mode 0644, the given mtime). */
export function fileEntryOf(path: string, body: Uint8Array, mtimeNs = "1000000000000"): SnapshotEntry {
  return { path, kind: "file", size: body.length, mode: 0o644, mtimeNs, sha256: sha256Of(body) };
}
