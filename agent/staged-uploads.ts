// Large staged uploads. A message goes only once every payload it names is
// staged, so the sender ends a message before a record whose payload is large
// (when records precede it): those go at once, and the large one starts the
// next message, which records after it join (they wait for it either way:
// FIFO).

import { MAX_PACK_BYTES } from "../contract/packed-content.ts";
import type { StagedPayload } from "./transport/transport.ts";

/**
 * A payload larger than this is large. A message's own pack is up to this size, and its records wait for that upload
 * anyway: a payload no larger costs them little more, and cutting there would make messages of many medium files
 * smaller. Larger ones go up in parts (MULTIPART_THRESHOLD), which is also where their progress is known.
 */
export const LARGE_STAGED_BYTES = MAX_PACK_BYTES;

/** True when the records packed before this payload go in a message of their own rather than wait for its upload. */
export function endsMessageBefore(payload: StagedPayload | undefined): boolean {
  return payload !== undefined && payload.size > LARGE_STAGED_BYTES;
}
