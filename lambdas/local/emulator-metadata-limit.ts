// S3 refuses a write whose user metadata passes 2 KB (the UTF-8 bytes of
// every x-amz-meta- name, without the prefix, and value) with
// MetadataTooLarge; fauxqs takes any. The local cloud refuses it as S3 does,
// so a write that would fail on AWS fails in tests too: PutObject, CopyObject
// with the REPLACE directive (COPY keeps the source's metadata, which fit)
// and CreateMultipartUpload.

import type http from "node:http";
import { USER_METADATA_LIMIT_BYTES } from "../../contract/link-meta.ts";
import { errorXml, header, requestId, S3ErrorAnswer, userMetadata } from "./emulator-s3-http.ts";

/** The writes that set an object's metadata from the request's headers. */
function setsMetadata(request: http.IncomingMessage): boolean {
  const query = new URL(request.url ?? "/", "http://local").searchParams;
  if (request.method === "POST") return query.has("uploads");
  if (request.method !== "PUT" || query.has("uploadId") || query.has("partNumber")) return false;
  // Other PUTs of a bucket's subresources (versioning, lifecycle ...) carry no x-amz-meta- headers.
  return header(request, "x-amz-copy-source") === undefined || header(request, "x-amz-metadata-directive") === "REPLACE";
}

/** The bytes of the request's metadata: Node reads header bytes as latin1, one character per byte. */
function metadataBytes(request: http.IncomingMessage): number {
  let total = 0;
  for (const [name, value] of Object.entries(userMetadata(request))) total += Buffer.byteLength(name, "latin1") + Buffer.byteLength(value, "latin1");
  return total;
}

/** S3's refusal of request, or undefined when its metadata fits (or it sets none). */
export function metadataRefusal(request: http.IncomingMessage): S3ErrorAnswer | undefined {
  if (!setsMetadata(request)) return undefined;
  const size = metadataBytes(request);
  if (size <= USER_METADATA_LIMIT_BYTES) return undefined;
  return new S3ErrorAnswer("MetadataTooLarge", `Your metadata headers exceed the maximum allowed metadata size (${size} bytes, at most ${USER_METADATA_LIMIT_BYTES}).`, 400);
}

/** Makes server (fauxqs's HTTP server, with the local cloud's layers) refuse writes whose metadata S3 would refuse. */
export function refuseOversizeMetadata(server: http.Server): void {
  const behind = server.listeners("request");
  server.removeAllListeners("request");
  server.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => {
    const refusal = metadataRefusal(request);
    if (!refusal) {
      for (const listener of behind) Reflect.apply(listener, server, [request, response]);
      return;
    }
    request.resume();
    const bytes = Buffer.from(errorXml(refusal), "utf8");
    response.writeHead(refusal.status, { "content-type": "application/xml", "content-length": String(bytes.length), "x-amz-request-id": requestId() });
    response.end(bytes);
  });
}
