// Single-object S3 requests (PUT, GET, HEAD, DELETE) around the SDK's
// per-request pipeline (signed-requests.ts): the applier writes one object per
// replicated file. The SDK client resolves the endpoint; one that needs more
// than plain SigV4 (SigV4a, S3 Express) is not served here, and open() answers
// undefined so that the caller uses the SDK.

import type http from "node:http";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { getEndpointFromInstructions } from "@smithy/core/endpoints";
import type { WriteResult } from "./store/store.ts";
import { AwsRequestError, plainSigV4Target, requestIdOf, SignedRequests, uriEncode, type SignedRequest, type SignedRequestOptions, type SignedResponse } from "./signed-requests.ts";

export type ObjectResponse = SignedResponse;
export type ObjectRequestOptions = SignedRequestOptions;

/** User metadata from x-amz-meta-* headers, lower-case keys as the SDK returns them. */
export function metadataOf(headers: http.IncomingHttpHeaders): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith("x-amz-meta-") && typeof value === "string") meta[name.slice("x-amz-meta-".length)] = value;
  }
  return meta;
}

/** The version (an unversioned bucket's "null" left out) and ETag a write's answer names. */
export function writeResultOf(headers: http.IncomingHttpHeaders): WriteResult {
  const version = headers["x-amz-version-id"];
  const etag = headers.etag;
  return { ...(typeof version === "string" && version !== "" && version !== "null" ? { versionId: version } : {}), ...(typeof etag === "string" && etag !== "" ? { etag } : {}) };
}

/** A key as S3's REST paths carry it: each segment percent-encoded, slashes kept. */
export function encodeKeyPath(key: string): string {
  // Most keys are made of characters that need no encoding.
  return UNRESERVED_PATH.test(key) ? key : key.split("/").map(uriEncode).join("/");
}

/** RFC 3986's unreserved characters and "/": a key of these alone is its own path. */
const UNRESERVED_PATH = /^[A-Za-z0-9\-._~/]*$/;

export class S3ObjectRequests {
  readonly #requests: SignedRequests;

  private constructor(requests: SignedRequests) {
    this.#requests = requests;
  }

  /** Direct requests for objects of bucket through client's endpoint and credentials, or undefined when that endpoint is not plain SigV4. */
  static async open(client: S3Client, bucket: string, options: ObjectRequestOptions = {}): Promise<S3ObjectRequests | undefined> {
    const endpoint = await getEndpointFromInstructions({ Bucket: bucket, Key: "-" }, PutObjectCommand, client.config);
    const target = plainSigV4Target(endpoint);
    return target ? new S3ObjectRequests(new SignedRequests(client.config, target, s3ErrorOf, options)) : undefined;
  }

  /**
   * PutObject; the body must fit one request (the caller sends larger ones in parts). With its SHA-256 (base64), S3
   * checks the body on write and keeps the checksum. Resolves to the version (x-amz-version-id) and ETag written.
   */
  async put(key: string, body: Uint8Array, meta: Record<string, string>, checksumSha256?: string): Promise<WriteResult> {
    const headers: Record<string, string> = { "content-type": "application/octet-stream", ...(checksumSha256 ? { "x-amz-checksum-sha256": checksumSha256 } : {}) };
    for (const [name, value] of Object.entries(meta)) headers[`x-amz-meta-${name.toLowerCase()}`] = value;
    // The checksum is the payload's hash too: the body is hashed once, and S3 checks both against it.
    const payloadSha256 = checksumSha256 ? Buffer.from(checksumSha256, "base64").toString("hex") : undefined;
    return writeResultOf((await this.send("PUT", key, { body, headers, ...(payloadSha256 ? { payloadSha256 } : {}) })).headers);
  }

  /** GetObject (of one version when given); a missing object throws AwsRequestError NoSuchKey (404). */
  get(key: string, versionId?: string): Promise<ObjectResponse> {
    return this.send("GET", key, versionId !== undefined ? { query: { versionId } } : {});
  }

  /** HeadObject, with the checksum the store keeps; a missing object throws AwsRequestError NotFound (404). */
  head(key: string): Promise<ObjectResponse> {
    return this.send("HEAD", key, { headers: { "x-amz-checksum-mode": "ENABLED" } });
  }

  async delete(key: string): Promise<void> {
    await this.send("DELETE", key, {});
  }

  send(method: string, key: string, request: SignedRequest): Promise<ObjectResponse> {
    return this.#requests.send(method, `/${encodeKeyPath(key)}`, request);
  }

  /** Closes idle connections. */
  close(): void {
    this.#requests.close();
  }
}

/** The error S3 answered: its XML Code and Message, or for a body-less answer (HEAD) a name from the status like the SDK's. */
function s3ErrorOf(response: ObjectResponse): AwsRequestError {
  const text = response.body.toString("utf8");
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? STATUS_NAMES[response.status] ?? `Http${response.status}`;
  const message = unescapeXml(/<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? `S3 answered ${response.status}`);
  return new AwsRequestError(code, message, response.status, requestIdOf(response));
}

const STATUS_NAMES: Record<number, string> = { 301: "PermanentRedirect", 400: "BadRequest", 403: "Forbidden", 404: "NotFound", 412: "PreconditionFailed", 500: "InternalError", 503: "ServiceUnavailable" };

const XML_ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function unescapeXml(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos);/g, (_, name: string) => XML_ENTITIES[name] ?? "");
}
