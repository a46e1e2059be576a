// A staged object counts only as what the signed message says it is
// (DESIGN 8): its SHA-256 is checked against the record's before anything is
// written, and the copy later takes exactly the version that was checked.

import { BadMessageError, type BlockRecord, type PutRecord } from "../../contract/wire.ts";
import type { TargetStore } from "../store/store.ts";

export interface CheckedStaged {
  readonly record: PutRecord | BlockRecord;
  readonly staged: string;
  /** ETag of the version whose content was checked. */
  readonly etag: string;
}

/** The staged object at key, checked to hold `expected` bytes with the record's sha256; BadMessageError when it does not. */
export async function checkStaged(store: TargetStore, key: string, record: PutRecord | BlockRecord, what: string, expected: number): Promise<CheckedStaged> {
  const content = await store.contentSha256(key);
  if (!content) throw new BadMessageError(`staged content of ${what} is missing at ${key}`);
  if (content.size !== expected) throw new BadMessageError(`staged content of ${what} is ${content.size} bytes, expected ${expected}`);
  if (content.sha256 !== record.sha256) {
    throw new BadMessageError(`staged content of ${what} at ${key} has sha256 ${content.sha256}, not the ${record.sha256} its message names; it was not written`);
  }
  return { record, staged: key, etag: content.etag };
}
