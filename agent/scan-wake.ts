// When the whole-set scan (an initial mirror) wakes the set's sender while it runs: its first, small transactions, so
// the target starts on the first files at once, and from then on each time a full message waits, so the sender does
// not sleep out its idle second while whole messages pile up, nor send each 500-change transaction as a message of
// its own (136 KB bodies instead of ~400 KB, each paying a message's serial requests on the target).

import { MAX_PACK_BYTES } from "../contract/packed-content.ts";
import { MAX_MESSAGE_BYTES } from "../contract/wire.ts";
import type { Journal } from "./journal.ts";

/**
 * Records that fill a message: a small file's record is ~250-300 bytes of JSON (its bytes travel in the message's
 * pack), so about this many fill MAX_MESSAGE_BYTES.
 */
export const FULL_MESSAGE_RECORDS = Math.floor(MAX_MESSAGE_BYTES / 300);

/** Whether the set's unsent records fill a message: by their count, or by content that fills a pack. */
export function fillsMessage(journal: Journal, set: string): boolean {
  const { backlogRecords, backlogBytes } = journal.sets.counters(set);
  return backlogRecords >= FULL_MESSAGE_RECORDS || backlogBytes >= MAX_PACK_BYTES;
}

/** The whole-set scan's onChunkJournaled: wakes the sender after an early chunk, and after a later one once a message is full. */
export function scanWakes(journal: Journal, set: string, wake: () => void): (early: boolean) => void {
  return (early) => {
    if (early || fillsMessage(journal, set)) wake();
  };
}
