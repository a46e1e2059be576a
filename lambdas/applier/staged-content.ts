// A staged object counts only as what the signed message says it is
// (DESIGN 8): its SHA-256 is checked against the record's before anything is
// written, and the copy later takes exactly the version that was checked.

import { mapConcurrent } from "../../contract/async.ts";
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

/** A message's content checks in flight at once: each staged one is a read of the whole object, mostly waiting on S3. */
export const CHECKS_IN_FLIGHT = 8;

/**
 * Runs a message's checks, CHECKS_IN_FLIGHT at a time, and resolves with their results in order. Once one fails, no
 * further check starts (the message is rejected: reading the rest is wasted); those in flight settle, and it rejects
 * with the failure of the first one in order, as checking one after the other would.
 */
export async function checkInOrder<T>(checks: readonly (() => Promise<T>)[]): Promise<T[]> {
  type Outcome = { kind: "passed"; value: T } | { kind: "failed"; error: unknown } | { kind: "not started" };
  let failed = false;
  // Checks start in order: those never started all come after a failure.
  const settled = await mapConcurrent(checks, CHECKS_IN_FLIGHT, (check): Promise<Outcome> => {
    if (failed) return Promise.resolve({ kind: "not started" });
    return check().then(
      (value) => ({ kind: "passed", value }),
      (error: unknown) => {
        failed = true;
        return { kind: "failed", error };
      },
    );
  });
  return settled.map((outcome) => {
    if (outcome.kind === "failed") throw outcome.error;
    if (outcome.kind === "not started") throw new Error("internal: a check was not started with no failure before it");
    return outcome.value;
  });
}
