// SigV4 header signing for signed-requests.ts, byte for byte what the SDK's
// SignatureV4 produces for the same request (test/unit/sigv4.test.ts
// compares them), without its per-request overhead: the SDK re-derives a
// hash of the credentials on every request to look its cached key up, clones
// the request and goes through its provider and hash-constructor layers. Here
// the signing key (the HMAC chain of day, region and service) is derived once
// per day and credentials and kept as a prepared HMAC key, so a request costs
// one SHA-256 of its canonical form and one HMAC.

import { createHmac, createSecretKey, hash, type KeyObject } from "node:crypto";
import type { AwsCredentialIdentity, Provider } from "@smithy/types";

export type CredentialsSource = AwsCredentialIdentity | Provider<AwsCredentialIdentity>;

const ALGORITHM = "AWS4-HMAC-SHA256";
/** Headers the SDK never signs (hop-by-hop, or changed on the way). */
const UNSIGNABLE = new Set(["authorization", "cache-control", "connection", "expect", "from", "keep-alive", "max-forwards", "pragma", "referer", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id"]);
/** Headers the signer sets itself: any the caller passed are dropped, as the SDK drops them. */
const GENERATED = new Set(["authorization", "x-amz-date", "date"]);

/** SigV4's URI encoding (RFC 3986 unreserved characters kept), as the SDK's escapeUri. */
export function uriEncode(text: string): string {
  return encodeURIComponent(text).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** The day's signing key: HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request"). */
export function deriveSigningKey(secretAccessKey: string, shortDate: string, region: string, service: string): Buffer {
  let key: Buffer | string = `AWS4${secretAccessKey}`;
  for (const part of [shortDate, region, service, "aws4_request"]) key = createHmac("sha256", key).update(part, "utf8").digest();
  return Buffer.from(key);
}

export interface SignableRequest {
  readonly method: string;
  /** Already percent-encoded, signed as it is. */
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  /** Must include host and x-amz-content-sha256 (the payload's hash, which is signed). */
  readonly headers: Readonly<Record<string, string>>;
}

export interface SignerOptions {
  /** Derives a day's signing key. @default deriveSigningKey */
  readonly derive?: typeof deriveSigningKey;
}

interface DayKey {
  readonly shortDate: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly key: KeyObject;
}

interface SigningDates {
  /** Whole seconds since the epoch. */
  readonly second: number;
  readonly longDate: string;
  readonly shortDate: string;
  readonly scope: string;
}

/** A header value as signed: trimmed, each run of white space one space (the SDK's); most values have none to fold. */
function canonicalValue(value: string): string {
  return /\s/.test(value) ? value.trim().replace(/\s+/g, " ") : value;
}

/** The canonical query string: names and values URI-encoded, sorted by encoded name, the signature itself left out. */
function canonicalQuery(query: Readonly<Record<string, string>>): string {
  const pairs: (readonly [string, string])[] = [];
  for (const name in query) {
    if (name.toLowerCase() === "x-amz-signature") continue;
    const encoded = uriEncode(name);
    pairs.push([encoded, `${encoded}=${uriEncode(query[name] ?? "")}`]);
  }
  if (pairs.length === 0) return "";
  return pairs
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([, pair]) => pair)
    .join("&");
}

export class SigV4Signer {
  readonly #service: string;
  readonly #region: string;
  readonly #credentials: CredentialsSource;
  readonly #derive: typeof deriveSigningKey;
  #dayKey: DayKey | undefined;
  #signingDates: SigningDates | undefined;

  constructor(service: string, region: string, credentials: CredentialsSource, options: SignerOptions = {}) {
    this.#service = service;
    this.#region = region;
    this.#credentials = credentials;
    this.#derive = options.derive ?? deriveSigningKey;
  }

  /** The request's headers with x-amz-date, the session token (if any) and the authorization added. */
  async sign(request: SignableRequest, signingDate: Date): Promise<Record<string, string>> {
    const credentials = typeof this.#credentials === "function" ? await this.#credentials() : this.#credentials;
    const { longDate, shortDate, scope } = this.#dates(signingDate);
    const headers: Record<string, string> = {};
    for (const name in request.headers) if (!GENERATED.has(name.toLowerCase())) headers[name] = request.headers[name] ?? "";
    headers["x-amz-date"] = longDate;
    if (credentials.sessionToken) headers["x-amz-security-token"] = credentials.sessionToken;
    const canonical = new Map<string, string>();
    let payloadHash: string | undefined;
    for (const name in headers) {
      const lower = name.toLowerCase();
      const value = headers[name] ?? "";
      if (lower === "x-amz-content-sha256") payloadHash ??= value;
      if (UNSIGNABLE.has(lower) || lower.startsWith("proxy-") || lower.startsWith("sec-")) continue;
      canonical.set(lower, canonicalValue(value));
    }
    if (payloadHash === undefined) throw new Error("internal: a request to sign names no x-amz-content-sha256");
    const signed = [...canonical.keys()].sort();
    let canonicalHeaders = "";
    for (const name of signed) canonicalHeaders += `${name}:${canonical.get(name) ?? ""}\n`;
    const signedHeaders = signed.join(";");
    const canonicalRequest = `${request.method}\n${request.path}\n${canonicalQuery(request.query)}\n${canonicalHeaders}\n${signedHeaders}\n${payloadHash}`;
    const stringToSign = `${ALGORITHM}\n${longDate}\n${scope}\n${hash("sha256", canonicalRequest, "hex")}`;
    const signature = createHmac("sha256", this.#keyFor(credentials, shortDate)).update(stringToSign, "utf8").digest("hex");
    headers.authorization = `${ALGORITHM} Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`;
    return headers;
  }

  /** The signing date's forms, made again only when its second changes (requests come hundreds a second). */
  #dates(signingDate: Date): SigningDates {
    const second = Math.floor(signingDate.getTime() / 1000);
    const known = this.#signingDates;
    if (known && known.second === second) return known;
    const longDate = signingDate.toISOString().replace(/\.\d{3}Z$/, "Z").replace(/[-:]/g, "");
    const shortDate = longDate.slice(0, 8);
    const dates = { second, longDate, shortDate, scope: `${shortDate}/${this.#region}/${this.#service}/aws4_request` };
    this.#signingDates = dates;
    return dates;
  }

  /** The day's signing key, derived again only on a new (UTC) day or with new credentials. */
  #keyFor(credentials: AwsCredentialIdentity, shortDate: string): KeyObject {
    const known = this.#dayKey;
    if (known && known.shortDate === shortDate && known.accessKeyId === credentials.accessKeyId && known.secretAccessKey === credentials.secretAccessKey) return known.key;
    const key = createSecretKey(this.#derive(credentials.secretAccessKey, shortDate, this.#region, this.#service));
    this.#dayKey = { shortDate, accessKeyId: credentials.accessKeyId, secretAccessKey: credentials.secretAccessKey, key };
    return key;
  }
}
