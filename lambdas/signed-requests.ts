// AWS requests signed with SigV4 (sigv4.ts: the SDK's signatures, the day's
// signing key derived once) and sent on a keep-alive
// agent, without the SDK's per-request pipeline. Profiled, that pipeline
// (middleware, endpoint rules, schema serde) spent ~1.3 ms of CPU on each S3
// request against ~0.15 ms for the HTTP exchange, and ~7 ms serializing each
// 400 KiB SQS message: it, not AWS, set the pace of the applier's object
// writes and of the agent's sends (bench/notes.md).
//
// The SDK client still decides whatever differs between deployments: the
// endpoint (partition, FIPS, dual-stack, path style, a custom endpoint), the
// credentials (its provider chain, cached and refreshed), the clock offset and
// the attempts. An endpoint that needs more than plain SigV4 is not served
// here: callers fall back to the SDK.

import { createHash } from "node:crypto";
import type http from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import type { EndpointV2 } from "@smithy/types";
import { isTransientAwsError } from "./aws-errors.ts";
import { Http1Pool, MAX_ERROR_BODY_BYTES, type MinimumTransfer } from "./http1-pool.ts";
import { SigV4Signer, uriEncode, type CredentialsSource } from "./sigv4.ts";

export { uriEncode };

const EMPTY_SHA256 = createHash("sha256").digest("hex");
/** A request that sends nothing and receives nothing for this long is abandoned (and retried). */
const IDLE_TIMEOUT_MS = 60_000;
/** A clock offset is corrected when it moves by more than this (AWS refuses signatures 15 minutes off). */
const SKEW_LIMIT_MS = 5 * 60_000;
const CLOCK_SKEW_CODES = new Set(["RequestTimeTooSkewed", "RequestExpired", "InvalidSignatureException", "SignatureDoesNotMatch"]);

/** An error AWS answered, shaped like the SDK's service exceptions (name = the service's code, $metadata.httpStatusCode). */
export class AwsRequestError extends Error {
  readonly $metadata: { readonly httpStatusCode: number; readonly requestId?: string };

  constructor(code: string, message: string, status: number, requestId: string | undefined) {
    super(message);
    this.name = code;
    this.$metadata = { httpStatusCode: status, ...(requestId ? { requestId } : {}) };
  }
}

export interface SignedResponse {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: Buffer;
  /** The body as it arrived, in pieces, where the client kept them (http1-pool.ts): read without a copy. */
  readonly chunks?: readonly Buffer[];
  /** An error's body was longer than the client reads (http1-pool.ts): `body` is its start only. */
  readonly cut?: true;
}

/** Where requests go and how they are signed. */
export interface SigningTarget {
  readonly url: URL;
  readonly signingName: string;
  readonly signingRegion: string;
}

/** What these requests follow of an SDK client's resolved config (an S3Client's or SQSClient's `config`). */
export interface ClientSettings {
  readonly credentials: CredentialsSource;
  systemClockOffset: number;
  readonly maxAttempts: () => Promise<number>;
}

export interface SignedRequestOptions {
  /** First retry's ceiling; later ones double it (full jitter). The SDK's default is 100 ms. */
  readonly retryBaseMs?: number;
  /** A request that sends and receives nothing for this long is abandoned (and retried). @default 60 s */
  readonly idleTimeoutMs?: number;
  /** A connection moving less than this while a request is on it fails the request (http1-pool.ts); none when absent. */
  readonly minimumTransfer?: MinimumTransfer;
}

/**
 * The signing target of an endpoint the SDK resolved, or undefined when it asks for more than plain SigV4 (SigV4a,
 * S3 Express, extra headers). An endpoint that names no auth scheme is signed with `defaults` when given.
 */
export function plainSigV4Target(endpoint: EndpointV2, defaults?: { signingName: string; signingRegion: string }): SigningTarget | undefined {
  if (endpoint.headers && Object.keys(endpoint.headers).length > 0) return undefined;
  if (endpoint.url.protocol !== "https:" && endpoint.url.protocol !== "http:") return undefined;
  const schemes = endpoint.properties?.authSchemes;
  if (schemes === undefined && defaults) return { url: endpoint.url, ...defaults };
  const scheme: unknown = Array.isArray(schemes) ? schemes[0] : undefined;
  if (typeof scheme !== "object" || scheme === null) return undefined;
  const { name, signingName, signingRegion, disableDoubleEncoding } = scheme as Record<string, unknown>;
  if (name !== "sigv4" || typeof signingName !== "string" || typeof signingRegion !== "string" || disableDoubleEncoding !== true) return undefined;
  return { url: endpoint.url, signingName, signingRegion };
}

export interface SignedRequest {
  readonly body?: Uint8Array;
  /** The body's SHA-256 (hex) when the caller has it already: signed as the payload's hash, which AWS checks. */
  readonly payloadSha256?: string;
  readonly headers?: Record<string, string>;
  readonly query?: Record<string, string>;
  /** An answer with a longer body fails with HttpAnswerTooLargeError before it is read (http1-pool.ts). */
  readonly maxBodyBytes?: number;
}

export class SignedRequests {
  readonly #settings: ClientSettings;
  readonly #url: URL;
  readonly #basePath: string;
  readonly #signer: SigV4Signer;
  readonly #pool: Http1Pool;
  readonly #retryBaseMs: number;
  readonly #errorOf: (response: SignedResponse) => AwsRequestError;

  /** `errorOf` reads the service's error answer (anything but 2xx) into an error named with its code. */
  constructor(settings: ClientSettings, target: SigningTarget, errorOf: (response: SignedResponse) => AwsRequestError, options: SignedRequestOptions = {}) {
    this.#settings = settings;
    this.#url = target.url;
    this.#basePath = target.url.pathname.replace(/\/+$/, "");
    this.#signer = new SigV4Signer(target.signingName, target.signingRegion, settings.credentials);
    this.#pool = new Http1Pool(target.url, {
      maxSockets: 50,
      timeoutMs: options.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
      ...(options.minimumTransfer !== undefined ? { minimumTransfer: options.minimumTransfer } : {}),
    });
    this.#retryBaseMs = options.retryBaseMs ?? 100;
    this.#errorOf = errorOf;
  }

  /** Closes idle connections. */
  close(): void {
    this.#pool.close();
  }

  /**
   * One request to `path` (percent-encoded, below the endpoint's own path), retried like the SDK's standard mode:
   * transient failures up to the client's maxAttempts, with backoff; a refusal for a skewed clock after correcting it.
   */
  async send(method: string, path: string, request: SignedRequest): Promise<SignedResponse> {
    const maxAttempts = await this.#settings.maxAttempts();
    const body = request.body ?? new Uint8Array();
    const payloadHash = request.payloadSha256 ?? (body.length > 0 ? createHash("sha256").update(body).digest("hex") : EMPTY_SHA256);
    const fullPath = `${this.#basePath}${path}`;
    const query = request.query ?? {};
    const search = Object.entries(query)
      .map(([name, value]) => `${uriEncode(name)}=${uriEncode(value)}`)
      .join("&");
    for (let attempt = 1; ; attempt++) {
      const headers = await this.#signer.sign(
        {
          method,
          path: fullPath,
          query,
          headers: {
            ...request.headers,
            host: this.#url.host,
            "x-amz-content-sha256": payloadHash,
            ...(body.length > 0 || method === "PUT" || method === "POST" ? { "content-length": String(body.length) } : {}),
          },
        },
        new Date(Date.now() + this.#settings.systemClockOffset),
      );
      let failure: unknown;
      let clockCorrected = false;
      try {
        const response = await this.#exchange(method, search ? `${fullPath}?${search}` : fullPath, headers, body, request.maxBodyBytes);
        if (response.status < 300) return response;
        const answered = this.#errorOf(response);
        // Read from its start only: the error says so, as its message may be the cut body's.
        if (response.cut) answered.message += ` (the answer's body was longer than ${MAX_ERROR_BODY_BYTES / 1024} KiB: only its start was read, and the connection dropped)`;
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

  #exchange(method: string, path: string, headers: Record<string, string>, body: Uint8Array, maxBodyBytes?: number): Promise<SignedResponse> {
    return this.#pool.request(method, path, headers, body, maxBodyBytes);
  }

  /** AWS answers a skewed clock with its own Date: the next attempts (and the SDK's requests) are signed with that offset. True when it changed. */
  #correctClock(response: SignedResponse): boolean {
    const serverTime = Date.parse(response.headers.date ?? "");
    if (Number.isNaN(serverTime)) return false;
    const offset = serverTime - Date.now();
    if (Math.abs(offset - this.#settings.systemClockOffset) <= SKEW_LIMIT_MS) return false;
    this.#settings.systemClockOffset = offset;
    return true;
  }
}

/** The x-amz-request-id (S3) or x-amzn-requestid (JSON services) of an answer. */
export function requestIdOf(response: SignedResponse): string | undefined {
  const id = response.headers["x-amz-request-id"] ?? response.headers["x-amzn-requestid"];
  return typeof id === "string" ? id : undefined;
}
