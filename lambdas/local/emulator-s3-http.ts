// What the local cloud's own S3 answers share (the versioned front,
// emulator-versioned-bucket.ts, and the reads and copies of bodies in files,
// emulator-file-bodies.ts): S3's errors, a request's bucket, key and copy
// source, and the headers of an object.

import { randomUUID } from "node:crypto";
import http from "node:http";
import { escapeXml } from "./emulator-version-listing.ts";
import type { EmulatorObject } from "./emulator-versions.ts";

/** An S3 error answer: its code, message and HTTP status. */
export class S3ErrorAnswer extends Error {
  override name = "S3ErrorAnswer";
  readonly code: string;
  readonly status: number;
  constructor(code: string, message: string, status: number) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

export const NO_SUCH_BUCKET = (bucket: string) => new S3ErrorAnswer("NoSuchBucket", `The specified bucket does not exist: ${bucket}`, 404);
export const NO_SUCH_KEY = () => new S3ErrorAnswer("NoSuchKey", "The specified key does not exist.", 404);

/** An error fauxqs's store threw (its S3Error), as an answer. */
export function answerOf(error: unknown): S3ErrorAnswer | undefined {
  if (error instanceof S3ErrorAnswer) return error;
  if (!(error instanceof Error) || !("code" in error) || !("statusCode" in error)) return undefined;
  const { code, statusCode } = error;
  return typeof code === "string" && typeof statusCode === "number" ? new S3ErrorAnswer(code, error.message, statusCode) : undefined;
}

export const requestId = () => randomUUID().replaceAll("-", "").toUpperCase().slice(0, 16);

export function header(request: http.IncomingMessage, name: string): string | undefined {
  const value = request.headers[name];
  return typeof value === "string" ? value : undefined;
}

/** bucket and key of a request, path-style or (as fauxqs reads it) virtual-hosted-style. */
export function target(request: http.IncomingMessage, pathname: string): { bucket: string; key: string } | undefined {
  const hostname = (header(request, "host") ?? "").split(":")[0] ?? "";
  const contentType = header(request, "content-type") ?? "";
  const virtual = hostname.includes(".") && !/^\d+\.\d+\.\d+\.\d+$/.test(hostname) && !/x-www-form-urlencoded|x-amz-json-1\.0/.test(contentType);
  const path = virtual ? `/${hostname.slice(0, hostname.indexOf("."))}${pathname}` : pathname;
  const match = /^\/([^/]+)(?:\/(.*))?$/.exec(path);
  if (!match?.[1]) return undefined;
  try {
    return { bucket: decodeURIComponent(match[1]), key: decodeURIComponent(match[2] ?? "") };
  } catch {
    return undefined;
  }
}

/** The source of a CopyObject or UploadPartCopy: bucket, key and version id when named. */
export function copySourceOf(request: http.IncomingMessage): { bucket: string; key: string; versionId?: string } | undefined {
  const raw = header(request, "x-amz-copy-source");
  if (!raw) return undefined;
  const query = raw.indexOf("?");
  let path: string;
  try {
    path = decodeURIComponent(query >= 0 ? raw.slice(0, query) : raw).replace(/^\//, "");
  } catch {
    throw new S3ErrorAnswer("InvalidArgument", `x-amz-copy-source is not URL-encoded: ${raw}`, 400);
  }
  const versionId = query >= 0 ? (new URLSearchParams(raw.slice(query + 1)).get("versionId") ?? undefined) : undefined;
  const slash = path.indexOf("/");
  if (slash <= 0) throw new S3ErrorAnswer("InvalidArgument", "Invalid copy source bucket name", 400);
  return { bucket: path.slice(0, slash), key: path.slice(slash + 1), ...(versionId !== undefined ? { versionId } : {}) };
}

export function userMetadata(request: http.IncomingMessage): Record<string, string> {
  const metadata: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (name.startsWith("x-amz-meta-") && typeof value === "string") metadata[name.slice("x-amz-meta-".length)] = value;
  }
  return metadata;
}

/** A copy's x-amz-copy-source-if-match against the source's ETag. */
export function checkCopySourceIfMatch(request: http.IncomingMessage, source: EmulatorObject): void {
  const ifMatch = header(request, "x-amz-copy-source-if-match");
  if (ifMatch !== undefined && ifMatch.replaceAll('"', "") !== source.etag.replaceAll('"', "")) {
    throw new S3ErrorAnswer("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412);
  }
}

/** The headers S3 answers a GET or HEAD of object with. */
export function objectHeaders(object: EmulatorObject, versionId: string | undefined, checksumMode: boolean): http.OutgoingHttpHeaders {
  const headers: http.OutgoingHttpHeaders = {
    "content-type": object.contentType,
    etag: object.etag,
    "last-modified": object.lastModified.toUTCString(),
    "accept-ranges": "bytes",
    ...(versionId !== undefined ? { "x-amz-version-id": versionId } : {}),
  };
  for (const [name, value] of Object.entries(object.metadata)) headers[`x-amz-meta-${name}`] = value;
  if (object.contentLanguage) headers["content-language"] = object.contentLanguage;
  if (object.contentDisposition) headers["content-disposition"] = object.contentDisposition;
  if (object.cacheControl) headers["cache-control"] = object.cacheControl;
  if (object.contentEncoding) headers["content-encoding"] = object.contentEncoding;
  if (object.parts) headers["x-amz-mp-parts-count"] = String(object.parts.length);
  if (checksumMode && object.checksumAlgorithm && object.checksumValue) {
    headers[`x-amz-checksum-${object.checksumAlgorithm.toLowerCase()}`] = object.checksumValue;
    if (object.checksumType) headers["x-amz-checksum-type"] = object.checksumType;
  }
  return headers;
}

/** The bytes of "bytes=a-b", "bytes=a-" or "bytes=-n" within total, or undefined when not satisfiable. */
export function byteRange(range: string, total: number): { start: number; end: number } | undefined {
  const match = /^bytes=(\d*)-(\d*)$/.exec(range);
  if (!match || (match[1] === "" && match[2] === "")) return undefined;
  if (match[1] === "") {
    const suffix = Number(match[2]);
    return suffix > 0 && total > 0 ? { start: Math.max(0, total - suffix), end: total - 1 } : undefined;
  }
  const start = Number(match[1]);
  const end = match[2] === "" ? total - 1 : Math.min(Number(match[2]), total - 1);
  return start < total && start <= end ? { start, end } : undefined;
}

/** S3's XML error body. */
export function errorXml(error: S3ErrorAnswer): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${escapeXml(error.code)}</Code><Message>${escapeXml(error.message)}</Message><RequestId>${requestId()}</RequestId></Error>`;
}

/** The request again, its body the bytes read from it already. */
export function replayed(request: http.IncomingMessage, body: Buffer | readonly Buffer[]): http.IncomingMessage {
  const again = new http.IncomingMessage(request.socket);
  again.method = request.method;
  again.url = request.url;
  again.httpVersionMajor = request.httpVersionMajor;
  again.httpVersionMinor = request.httpVersionMinor;
  again.httpVersion = request.httpVersion;
  again.headers = request.headers;
  again.rawHeaders = request.rawHeaders;
  // Whole already: destroyed once read (as a stream is), an incomplete message would destroy the shared keep-alive socket.
  again.complete = true;
  for (const chunk of Buffer.isBuffer(body) ? [body] : body) again.push(chunk);
  again.push(null);
  return again;
}
