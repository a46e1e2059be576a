// An object body from the SDK, read chunk by chunk. In Node the SDK's body is
// a Node stream: read as one, directly. Its transformToWebStream adapter
// wraps every chunk in a promise of the web stream's reader, which cost the
// applier more CPU than hashing the bytes when it checked 40 MiB of staged
// objects (a Lambda has about half a core to spend).

import { Readable } from "node:stream";
import type { StreamingBlobPayloadOutputTypes } from "@smithy/types";

/** The body's bytes in order; nothing when there is no body. */
export async function* bodyChunks(body: StreamingBlobPayloadOutputTypes | undefined): AsyncGenerator<Uint8Array> {
  if (body === undefined) return;
  if (body instanceof Readable) {
    for await (const chunk of body) {
      if (!(chunk instanceof Uint8Array)) throw new TypeError("an object body stream gave a chunk that is not bytes");
      yield chunk;
    }
    return;
  }
  for await (const chunk of body.transformToWebStream()) yield chunk;
}
