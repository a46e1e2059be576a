// S3 checks the checksum a PutObject or UploadPart sends (x-amz-checksum-crc32,
// -crc32c, -crc64nvme, -sha1, -sha256, as a header or an aws-chunked trailer)
// and a Content-MD5 against the bytes it received, and refuses a mismatch
// with BadDigest, writing nothing; fauxqs keeps whatever a writer claims.
// The local cloud checks them as S3 does, before any layer writes, so a
// checksum the emulator keeps is one it proved: the local target may trust a
// HEAD's whole-object SHA-256 as the applier does on S3 (staged-content.ts).
// S3's CopyObject takes no checksum value (it computes the copy's from the
// bytes): a claimed one is dropped rather than kept unproved, as on any other
// PUT of an object that writes no bytes of its own (UploadPartCopy, rename).

import { createHash } from "node:crypto";
import type http from "node:http";
import { crc32 } from "node:zlib";
import { errorXml, header, replayed, requestId, S3ErrorAnswer, target } from "./emulator-s3-http.ts";

const ALGORITHMS = ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"] as const;
type Algorithm = (typeof ALGORITHMS)[number];
const DIGEST_BYTES: Record<Algorithm, number> = { crc32: 4, crc32c: 4, crc64nvme: 8, sha1: 20, sha256: 32 };

function reflectedTable(polynomial: bigint, width: bigint): bigint[] {
  return Array.from({ length: 256 }, (_, index) => {
    let value = BigInt(index);
    for (let bit = 0; bit < 8; bit++) value = value & 1n ? (value >> 1n) ^ polynomial : value >> 1n;
    return value & ((1n << width) - 1n);
  });
}

const CRC32C_TABLE = Uint32Array.from(reflectedTable(0x82f63b78n, 32n), Number);
const CRC64NVME_TABLE = reflectedTable(0x9a6c9329ac4bc9b5n, 64n);
const MASK64 = (1n << 64n) - 1n;

/** CRC-32C (Castagnoli), as S3 computes x-amz-checksum-crc32c. */
export function crc32c(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = (CRC32C_TABLE[(crc ^ byte) & 0xff] ?? 0) ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** CRC-64/NVME, as S3 computes x-amz-checksum-crc64nvme (byte at a time: no tidemark client sends it). */
export function crc64nvme(bytes: Uint8Array): bigint {
  let crc = MASK64;
  for (const byte of bytes) crc = (CRC64NVME_TABLE[Number((crc ^ BigInt(byte)) & 0xffn)] ?? 0n) ^ (crc >> 8n);
  return crc ^ MASK64;
}

/** The checksum of bytes in algorithm, base64 as S3 names it. */
export function checksumOf(algorithm: Algorithm, bytes: Buffer): string {
  const out = Buffer.alloc(DIGEST_BYTES[algorithm]);
  if (algorithm === "crc32") out.writeUInt32BE(crc32(bytes) >>> 0);
  else if (algorithm === "crc32c") out.writeUInt32BE(crc32c(bytes));
  else if (algorithm === "crc64nvme") out.writeBigUInt64BE(crc64nvme(bytes));
  else return createHash(algorithm).update(bytes).digest("base64");
  return out.toString("base64");
}

/** The checksum of bytes that came in chunks: hashed chunk by chunk where the algorithm allows it (no joined copy). */
function checksumOfChunks(algorithm: Algorithm, chunks: readonly Buffer[]): string {
  if (algorithm === "sha1" || algorithm === "sha256") {
    const hash = createHash(algorithm);
    for (const chunk of chunks) hash.update(chunk);
    return hash.digest("base64");
  }
  if (algorithm === "crc32") {
    const out = Buffer.alloc(4);
    out.writeUInt32BE(chunks.reduce((crc, chunk) => crc32(chunk, crc), 0) >>> 0);
    return out.toString("base64");
  }
  return checksumOf(algorithm, Buffer.concat(chunks));
}

/** A claim to check: the header naming it, and its value. */
interface Claim {
  readonly name: string;
  readonly value: string;
}

function checksumClaims(headers: http.IncomingHttpHeaders | Record<string, string>): Claim[] {
  const claims: Claim[] = [];
  for (const algorithm of ALGORITHMS) {
    const value = headers[`x-amz-checksum-${algorithm}`];
    if (typeof value === "string") claims.push({ name: `x-amz-checksum-${algorithm}`, value });
  }
  return claims;
}

/** The payload of an aws-chunked body and its trailing headers; undefined when it is not well formed. */
export function decodeAwsChunked(raw: Buffer): { body: Buffer; trailers: Record<string, string> } | undefined {
  const chunks: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = raw.indexOf("\r\n", at);
    if (lineEnd < 0) return undefined;
    const size = Number.parseInt(raw.subarray(at, lineEnd).toString("latin1").split(";")[0] ?? "", 16);
    if (!Number.isInteger(size) || size < 0) return undefined;
    at = lineEnd + 2;
    if (size === 0) break;
    if (at + size + 2 > raw.length) return undefined;
    chunks.push(raw.subarray(at, at + size));
    at += size + 2;
  }
  const trailers: Record<string, string> = {};
  for (const line of raw.subarray(at).toString("latin1").split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { body: Buffer.concat(chunks), trailers };
}

/** What the checksum layer does with a request: checks its claims, drops them, or lets it by untouched. */
type Write = "verify" | "drop" | "other";

function writeOf(request: http.IncomingMessage): Write {
  const url = new URL(request.url ?? "/", "http://emulator");
  const at = target(request, url.pathname);
  if (request.method !== "PUT" || !at || at.key === "") return "other";
  // fauxqs sends every PUT of an object to PutObject or UploadPart, whatever else its query holds (?a=1,
  // a presigned URL's X-Amz-*), except a renameObject: that one writes no bytes, and a copy (CopyObject,
  // UploadPartCopy) takes none, so a claim on either is dropped rather than kept unproved.
  if (url.searchParams.has("renameObject") || header(request, "x-amz-copy-source") !== undefined) return "drop";
  return "verify";
}

const BAD_DIGEST_MD5 = () => new S3ErrorAnswer("BadDigest", "The Content-MD5 you specified did not match what we received.", 400);

/**
 * S3's refusal of a write of `raw` (whole, or the chunks it came in: an 8 MiB part is then hashed without being joined
 * into one more copy) with the request's headers, or undefined when every checksum it names matches.
 */
export function checksumRefusal(headers: http.IncomingHttpHeaders, raw: Buffer | readonly Buffer[]): S3ErrorAnswer | undefined {
  let body: readonly Buffer[] = Buffer.isBuffer(raw) ? [raw] : raw;
  let claims = checksumClaims(headers);
  if (typeof headers["content-encoding"] === "string" && headers["content-encoding"].includes("aws-chunked")) {
    const decoded = decodeAwsChunked(Buffer.concat(body));
    if (!decoded) return new S3ErrorAnswer("IncompleteBody", "The request body is not a well-formed aws-chunked body.", 400);
    body = [decoded.body];
    claims = [...claims, ...checksumClaims(decoded.trailers)];
  }
  const md5 = headers["content-md5"];
  if (typeof md5 === "string") {
    if (Buffer.from(md5, "base64").length !== 16) return new S3ErrorAnswer("InvalidDigest", "The Content-MD5 you specified is not valid.", 400);
    const hash = createHash("md5");
    for (const chunk of body) hash.update(chunk);
    if (hash.digest("base64") !== md5) return BAD_DIGEST_MD5();
  }
  for (const claim of claims) {
    const algorithm = ALGORITHMS.find((name) => claim.name === `x-amz-checksum-${name}`);
    if (!algorithm) continue;
    if (Buffer.from(claim.value, "base64").length !== DIGEST_BYTES[algorithm]) {
      return new S3ErrorAnswer("InvalidRequest", `Value for ${claim.name} header is invalid.`, 400);
    }
    if (checksumOfChunks(algorithm, body) !== claim.value) {
      return new S3ErrorAnswer("BadDigest", `The ${algorithm.toUpperCase()} you specified did not match the calculated checksum.`, 400);
    }
  }
  return undefined;
}

/** Whether the request's body must be read to check it: a PutObject or UploadPart naming a checksum or a Content-MD5. */
function namesChecksum(request: http.IncomingMessage): boolean {
  if (header(request, "content-md5") !== undefined || checksumClaims(request.headers).length > 0) return true;
  return header(request, "x-amz-trailer")?.toLowerCase().startsWith("x-amz-checksum-") ?? false;
}

/** The request's body as the chunks it came in: checked and handed on without joining them. */
async function readAll(request: http.IncomingMessage): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return chunks;
}

function refuse(response: http.ServerResponse, refusal: S3ErrorAnswer): void {
  const bytes = Buffer.from(errorXml(refusal), "utf8");
  response.writeHead(refusal.status, { "content-type": "application/xml", "content-length": String(bytes.length), "x-amz-request-id": requestId() });
  response.end(bytes);
}

/** Makes server (fauxqs's HTTP server, with the local cloud's layers) check every checksum a write names, as S3 does, before any layer sees it. */
export function verifyWriteChecksums(server: http.Server): void {
  const behind = server.listeners("request");
  const pass = (request: http.IncomingMessage, response: http.ServerResponse) => {
    for (const listener of behind) Reflect.apply(listener, server, [request, response]);
  };
  server.removeAllListeners("request");
  server.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => {
    const write = writeOf(request);
    if (write === "drop") {
      for (const claim of checksumClaims(request.headers)) Reflect.deleteProperty(request.headers, claim.name);
      return pass(request, response);
    }
    if (write === "other" || !namesChecksum(request)) return pass(request, response);
    readAll(request).then(
      (raw) => {
        const refusal = checksumRefusal(request.headers, raw);
        if (refusal) return refuse(response, refusal);
        pass(replayed(request, raw), response);
      },
      (error: unknown) => {
        if (!response.headersSent) refuse(response, new S3ErrorAnswer("IncompleteBody", `The request body could not be read: ${error instanceof Error ? error.message : String(error)}`, 400));
        else response.destroy();
      },
    );
  });
}
