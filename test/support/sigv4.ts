// An independent SigV4 check of a request as it arrived on the wire, the way
// S3 does it: the canonical request is rebuilt from the decoded path and query
// (each re-encoded with SigV4's strict URI encoding), the signed headers and
// the declared payload hash, and the signature recomputed with the secret.
// Written from the SigV4 specification, not from the SDK, so it can catch
// what the SDK's signer and ours might agree on wrongly.

import { createHash, createHmac } from "node:crypto";
import type { IncomingHttpHeaders } from "node:http";

export interface WireRequest {
  readonly method: string;
  /** The request target as sent: path and query, still percent-encoded. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export interface SigV4Check {
  readonly ok: boolean;
  /** Why it failed, for the assertion message. */
  readonly reason?: string;
  readonly signedHeaders: string[];
  readonly canonicalRequest: string;
}

/** SigV4's UriEncode: everything but A-Z a-z 0-9 - . _ ~ percent-encoded, hex upper-case. */
function uriEncode(text: string): string {
  return Array.from(Buffer.from(text, "utf8"))
    .map((byte) => {
      const c = String.fromCharCode(byte);
      return /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
    })
    .join("");
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac("sha256", key).update(data, "utf8").digest();
}

function headerText(headers: IncomingHttpHeaders, name: string): string {
  const value = headers[name];
  return Array.isArray(value) ? value.join(",") : (value ?? "");
}

export function checkSigV4(request: WireRequest, secretAccessKey: string): SigV4Check {
  const fail = (reason: string, signedHeaders: string[] = [], canonicalRequest = ""): SigV4Check => ({ ok: false, reason, signedHeaders, canonicalRequest });
  const authorization = headerText(request.headers, "authorization");
  const match = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(authorization);
  if (!match) return fail(`not a SigV4 Authorization header: ${authorization}`);
  const [, , day = "", region = "", service = "", signedList = "", signature = ""] = match;
  const signedHeaders = signedList.split(";");
  const amzDate = headerText(request.headers, "x-amz-date");
  if (!amzDate.startsWith(day)) return fail(`x-amz-date ${amzDate} is not of the credential's day ${day}`, signedHeaders);
  if (!signedHeaders.includes("host")) return fail("host is not signed", signedHeaders);
  const payloadHash = headerText(request.headers, "x-amz-content-sha256");
  const bodyHash = createHash("sha256").update(request.body).digest("hex");
  if (payloadHash !== "UNSIGNED-PAYLOAD" && payloadHash !== bodyHash) return fail(`x-amz-content-sha256 ${payloadHash} is not the body's hash ${bodyHash}`, signedHeaders);

  const [rawPath = "", rawQuery] = request.url.split(/\?(.*)/s, 2);
  const canonicalPath = rawPath
    .split("/")
    .map((segment) => uriEncode(decodeURIComponent(segment)))
    .join("/");
  const canonicalQuery = (rawQuery ?? "")
    .split("&")
    .filter((pair) => pair !== "")
    .map((pair) => {
      const [name = "", value = ""] = pair.split(/=(.*)/s, 2);
      return [uriEncode(decodeURIComponent(name)), uriEncode(decodeURIComponent(value))] as const;
    })
    .sort(([a, av], [b, bv]) => (a < b ? -1 : a > b ? 1 : av < bv ? -1 : av > bv ? 1 : 0))
    .map(([name, value]) => `${name}=${value}`)
    .join("&");
  const canonicalHeaders = signedHeaders.map((name) => `${name}:${headerText(request.headers, name).trim().replace(/\s+/g, " ")}\n`).join("");
  const canonicalRequest = [request.method, canonicalPath, canonicalQuery, canonicalHeaders, signedList, payloadHash].join("\n");
  const scope = `${day}/${region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, createHash("sha256").update(canonicalRequest, "utf8").digest("hex")].join("\n");
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${secretAccessKey}`, day), region), service), "aws4_request");
  const expected = hmac(signingKey, stringToSign).toString("hex");
  if (expected !== signature) return fail(`signature mismatch; canonical request:\n${canonicalRequest}`, signedHeaders, canonicalRequest);
  return { ok: true, signedHeaders, canonicalRequest };
}
