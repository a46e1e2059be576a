// Single-object S3 requests (PUT, GET, HEAD, DELETE) signed and sent without
// the SDK's per-request pipeline. The applier writes one object per replicated
// file; profiled, the SDK spent ~1.3 ms of CPU on each request (middleware,
// endpoint rules, serde) against ~0.15 ms for the HTTP exchange itself, so that
// pipeline, not S3, set the applier's pace (bench/notes.md).
//
// The SDK client still decides whatever differs between deployments: the
// endpoint (partition, FIPS, dual-stack, path style, a custom endpoint), the
// credentials (its provider chain, cached and refreshed) and the clock offset.
// An endpoint that needs more than plain SigV4 is not served here: open()
// answers undefined and the caller uses the SDK.

import { createHash, createHmac, createSecretKey, type Hash, type Hmac, type KeyObject } from "node:crypto";
import http from "node:http";
import https from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { getEndpointFromInstructions } from "@smithy/core/endpoints";
import { SignatureV4 } from "@smithy/signature-v4";
import type { EndpointV2, SourceData } from "@smithy/types";
import { isTransientAwsError } from "./aws-errors.ts";

const EMPTY_SHA256 = createHash("sha256").digest("hex");
/** A request that sends nothing and receives nothing for this long is abandoned (and retried). */
const IDLE_TIMEOUT_MS = 60_000;
/** A clock offset is corrected when it moves by more than this (S3 refuses signatures 15 minutes off). */
const SKEW_LIMIT_MS = 5 * 60_000;

/** An S3 error answer, shaped like the SDK's service exceptions (name = S3's code, $metadata.httpStatusCode). */
export class S3RequestError extends Error {
  readonly $metadata: { readonly httpStatusCode: number; readonly requestId?: string };

  constructor(code: string, message: string, status: number, requestId: string | undefined) {
    super(message);
    this.name = code;
    this.$metadata = { httpStatusCode: status, ...(requestId ? { requestId } : {}) };
  }
}

export interface ObjectResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
}

/** User metadata from x-amz-meta-* headers, lower-case keys as the SDK returns them. */
export function metadataOf(headers: http.IncomingHttpHeaders): Record<string, string> {
  const meta: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith("x-amz-meta-") && typeof value === "string") meta[name.slice("x-amz-meta-".length)] = value;
  }
  return meta;
}

/** Percent-encodes all but RFC 3986's unreserved characters, as SigV4 does. */
function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** A key as S3's REST paths carry it: each segment percent-encoded, slashes kept. */
export function encodeKeyPath(key: string): string {
  return key.split("/").map(uriEncode).join("/");
}

/** Where plain SigV4 requests for one bucket go, or undefined when the SDK's endpoint asks for more (SigV4a, S3 Express, extra headers). */
export function plainSigV4Endpoint(endpoint: EndpointV2): { url: URL; signingName: string; signingRegion: string } | undefined {
  const schemes = endpoint.properties?.authSchemes;
  const scheme: unknown = Array.isArray(schemes) ? schemes[0] : undefined;
  if (typeof scheme !== "object" || scheme === null) return undefined;
  const { name, signingName, signingRegion, disableDoubleEncoding } = scheme as Record<string, unknown>;
  if (name !== "sigv4" || typeof signingName !== "string" || typeof signingRegion !== "string" || disableDoubleEncoding !== true) return undefined;
  if (endpoint.headers && Object.keys(endpoint.headers).length > 0) return undefined;
  if (endpoint.url.protocol !== "https:" && endpoint.url.protocol !== "http:") return undefined;
  return { url: endpoint.url, signingName, signingRegion };
}

/** HMAC keys the signer uses again and again (the secret, the day's signing key), prepared once: preparing one costs more than the HMAC. */
const hmacKeys = new Map<string, KeyObject>();
const HMAC_KEYS_KEPT = 32;

function hmacKey(secret: SourceData): KeyObject {
  const bytes = bytesOf(secret);
  const id = typeof bytes === "string" ? `s:${bytes}` : `b:${Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64")}`;
  let key = hmacKeys.get(id);
  if (!key) {
    if (hmacKeys.size >= HMAC_KEYS_KEPT) hmacKeys.clear();
    key = createSecretKey(typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes);
    hmacKeys.set(id, key);
  }
  return key;
}

/** node:crypto SHA-256 (or HMAC-SHA-256 with a secret) in the shape the SigV4 signer takes. */
class NodeSha256 {
  readonly #hash: Hash | Hmac;

  constructor(secret?: SourceData) {
    this.#hash = secret === undefined ? createHash("sha256") : createHmac("sha256", hmacKey(secret));
  }

  update(data: SourceData): void {
    this.#hash.update(bytesOf(data));
  }

  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.#hash.digest());
  }
}

function bytesOf(data: SourceData): Uint8Array | string {
  if (typeof data === "string") return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

export interface ObjectRequestOptions {
  /** First retry's ceiling; later ones double it (full jitter). The SDK's default is 100 ms. */
  readonly retryBaseMs?: number;
}

export class S3ObjectRequests {
  readonly #client: S3Client;
  readonly #url: URL;
  readonly #basePath: string;
  readonly #signer: SignatureV4;
  readonly #agent: http.Agent;
  readonly #retryBaseMs: number;

  private constructor(client: S3Client, target: { url: URL; signingName: string; signingRegion: string }, options: ObjectRequestOptions) {
    this.#client = client;
    this.#url = target.url;
    this.#basePath = target.url.pathname.replace(/\/+$/, "");
    this.#signer = new SignatureV4({
      service: target.signingName,
      region: target.signingRegion,
      credentials: client.config.credentials,
      sha256: NodeSha256,
      uriEscapePath: false,
    });
    const agentOptions = { keepAlive: true, maxSockets: 50 };
    this.#agent = target.url.protocol === "https:" ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
    this.#retryBaseMs = options.retryBaseMs ?? 100;
  }

  /** Direct requests for objects of bucket through client's endpoint and credentials, or undefined when that endpoint is not plain SigV4. */
  static async open(client: S3Client, bucket: string, options: ObjectRequestOptions = {}): Promise<S3ObjectRequests | undefined> {
    const endpoint = await getEndpointFromInstructions({ Bucket: bucket, Key: "-" }, PutObjectCommand, client.config);
    const target = plainSigV4Endpoint(endpoint);
    return target ? new S3ObjectRequests(client, target, options) : undefined;
  }

  /** PutObject; the body must fit one request (the caller sends larger ones in parts). */
  async put(key: string, body: Uint8Array, meta: Record<string, string>): Promise<void> {
    const headers: Record<string, string> = { "content-type": "application/octet-stream" };
    for (const [name, value] of Object.entries(meta)) headers[`x-amz-meta-${name.toLowerCase()}`] = value;
    await this.send("PUT", key, { body, headers });
  }

  /** GetObject (of one version when given); a missing object throws S3RequestError NoSuchKey (404). */
  get(key: string, versionId?: string): Promise<ObjectResponse> {
    return this.send("GET", key, versionId !== undefined ? { query: { versionId } } : {});
  }

  /** HeadObject; a missing object throws S3RequestError NotFound (404). */
  head(key: string): Promise<ObjectResponse> {
    return this.send("HEAD", key, {});
  }

  async delete(key: string): Promise<void> {
    await this.send("DELETE", key, {});
  }

  /** Closes idle connections. */
  close(): void {
    this.#agent.destroy();
  }

  /** One request, retried like the SDK's standard mode: transient failures up to the client's maxAttempts, with backoff. */
  async send(method: string, key: string, request: { body?: Uint8Array; headers?: Record<string, string>; query?: Record<string, string> }): Promise<ObjectResponse> {
    const maxAttempts = await this.#client.config.maxAttempts();
    const body = request.body ?? new Uint8Array();
    const payloadHash = body.length > 0 ? createHash("sha256").update(body).digest("hex") : EMPTY_SHA256;
    const path = `${this.#basePath}/${encodeKeyPath(key)}`;
    const query = request.query ?? {};
    const search = Object.entries(query).map(([name, value]) => `${uriEncode(name)}=${uriEncode(value)}`).join("&");
    for (let attempt = 1; ; attempt++) {
      const signed = await this.#signer.sign(
        {
          method,
          protocol: this.#url.protocol,
          hostname: this.#url.hostname,
          path,
          query,
          headers: {
            ...request.headers,
            host: this.#url.host,
            "x-amz-content-sha256": payloadHash,
            ...(method === "PUT" ? { "content-length": String(body.length) } : {}),
          },
          body,
        },
        { signingDate: new Date(Date.now() + this.#client.config.systemClockOffset) },
      );
      let failure: unknown;
      let clockCorrected = false;
      try {
        const response = await this.#exchange(method, search ? `${path}?${search}` : path, signed.headers, body);
        if (response.status < 300) return response;
        const answered = errorOf(response);
        failure = answered;
        clockCorrected = CLOCK_SKEW_CODES.has(answered.name) && this.#correctClock(response);
      } catch (error) {
        failure = error;
      }
      if (attempt >= maxAttempts || !(isTransientAwsError(failure) || clockCorrected)) throw failure;
      const throttled = /Throttl|SlowDown/.test((failure as { name?: string }).name ?? "");
      const ceiling = Math.min(20_000, (throttled ? 5 : 1) * this.#retryBaseMs * 2 ** (attempt - 1));
      await sleep(Math.random() * ceiling);
    }
  }

  #exchange(method: string, path: string, headers: Record<string, string>, body: Uint8Array): Promise<ObjectResponse> {
    const transport = this.#url.protocol === "https:" ? https : http;
    return new Promise((resolve, reject) => {
      const request = transport.request(
        { protocol: this.#url.protocol, hostname: this.#url.hostname, port: this.#url.port || undefined, method, path, headers, agent: this.#agent, timeout: IDLE_TIMEOUT_MS },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("error", reject);
          response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
        },
      );
      request.on("timeout", () => request.destroy(Object.assign(new Error(`no answer from ${this.#url.host} in ${IDLE_TIMEOUT_MS / 1000} s`), { code: "ETIMEDOUT" })));
      request.on("error", reject);
      request.end(body.length > 0 ? body : undefined);
    });
  }

  /** S3 answers a skewed clock with its own Date: the next attempts (and the SDK's requests) are signed with that offset. True when it changed. */
  #correctClock(response: ObjectResponse): boolean {
    const serverTime = Date.parse(response.headers.date ?? "");
    if (Number.isNaN(serverTime)) return false;
    const offset = serverTime - Date.now();
    if (Math.abs(offset - this.#client.config.systemClockOffset) <= SKEW_LIMIT_MS) return false;
    this.#client.config.systemClockOffset = offset;
    return true;
  }
}

const CLOCK_SKEW_CODES = new Set(["RequestTimeTooSkewed", "RequestExpired"]);

/** The error S3 answered: its XML Code and Message, or for a body-less answer (HEAD) a name from the status like the SDK's. */
function errorOf(response: ObjectResponse): S3RequestError {
  const text = response.body.toString("utf8");
  const code = /<Code>([^<]*)<\/Code>/.exec(text)?.[1] ?? STATUS_NAMES[response.status] ?? `Http${response.status}`;
  const message = unescapeXml(/<Message>([^<]*)<\/Message>/.exec(text)?.[1] ?? `S3 answered ${response.status}`);
  const requestId = response.headers["x-amz-request-id"];
  return new S3RequestError(code, message, response.status, typeof requestId === "string" ? requestId : undefined);
}

const STATUS_NAMES: Record<number, string> = { 301: "PermanentRedirect", 400: "BadRequest", 403: "Forbidden", 404: "NotFound", 412: "PreconditionFailed", 500: "InternalError", 503: "ServiceUnavailable" };

const XML_ENTITIES: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function unescapeXml(text: string): string {
  return text.replace(/&(amp|lt|gt|quot|apos);/g, (_, name: string) => XML_ENTITIES[name] ?? "");
}
