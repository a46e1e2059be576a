// The applier's SigV4 signer (lambdas/sigv4.ts): the same headers, byte for
// byte, as the SDK's SignatureV4 for the requests signed-requests.ts sends,
// and the day's signing key derived once per day and credentials.

import { createHash, createHmac, type Hash, type Hmac } from "node:crypto";
import { SignatureV4 } from "@smithy/signature-v4";
import type { SourceData } from "@smithy/types";
import { describe, expect, it } from "vitest";
import { deriveSigningKey, SigV4Signer, type SignableRequest } from "../../lambdas/sigv4.ts";

const CREDENTIALS = { accessKeyId: "AKIDTIDEMARKTEST", secretAccessKey: "tidemark/secret+key" };
const EMPTY_SHA256 = createHash("sha256").digest("hex");

/** node:crypto in the shape the SDK's signer takes its hash in. */
class NodeSha256 {
  readonly #hash: Hash | Hmac;
  constructor(secret?: SourceData) {
    this.#hash = secret === undefined ? createHash("sha256") : createHmac("sha256", bytes(secret));
  }
  update(data: SourceData): void {
    this.#hash.update(bytes(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(this.#hash.digest());
  }
}

function bytes(data: SourceData): Uint8Array | string {
  if (typeof data === "string") return data;
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return new Uint8Array(data);
}

async function sdkHeaders(request: SignableRequest, date: Date, credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string }, service = "s3", region = "eu-west-1") {
  const signer = new SignatureV4({ service, region, credentials, sha256: NodeSha256, uriEscapePath: false });
  const signed = await signer.sign({ method: request.method, protocol: "https:", hostname: "bucket.s3.eu-west-1.amazonaws.com", path: request.path, query: { ...request.query }, headers: { ...request.headers } }, { signingDate: date });
  return signed.headers;
}

const host = "bucket.s3.eu-west-1.amazonaws.com";
const REQUESTS: [string, SignableRequest][] = [
  ["a PUT with metadata", { method: "PUT", path: "/data/docs/a%20b/c%2Bd.txt", query: {}, headers: { host, "x-amz-content-sha256": createHash("sha256").update("x").digest("hex"), "content-length": "1", "x-amz-meta-mode": "420", "x-amz-meta-mtime": "1700000000000000000" } }],
  ["a GET of a version, query encoded", { method: "GET", path: "/query%3Fhash%23amp%26eq%3Dsemi%3Bcolon%2C", query: { versionId: "v+1/=", "list-type": "2", prefix: "ünï cødé/*'()!" }, headers: { host, "x-amz-content-sha256": EMPTY_SHA256 } }],
  ["header values with runs of spaces, tabs and line breaks, names in capitals", { method: "PUT", path: "/k", query: {}, headers: { host, "x-amz-content-sha256": EMPTY_SHA256, "Content-Type": "  text/plain;\t\tcharset=utf-8  ", "x-amz-meta-note": "two  spaces\r\nand a break", "x-amz-copy-source": "/bucket/src%20key" } }],
  ["unsignable headers left out", { method: "DELETE", path: "/k", query: {}, headers: { host, "x-amz-content-sha256": EMPTY_SHA256, "user-agent": "tidemark", connection: "keep-alive", "proxy-authorization": "x", expect: "100-continue" } }],
  ["an EC2-style query POST", { method: "POST", path: "/", query: {}, headers: { host, "x-amz-content-sha256": createHash("sha256").update("Action=LockSnapshot").digest("hex"), "content-type": "application/x-www-form-urlencoded; charset=utf-8", "content-length": "20" } }],
];

describe("SigV4Signer", () => {
  it.each(REQUESTS)("signs %s with the SDK's headers, byte for byte", async (_what, request) => {
    const date = new Date("2026-11-30T10:11:12.345Z");
    const ours = await new SigV4Signer("s3", "eu-west-1", CREDENTIALS).sign(request, date);
    expect(ours).toEqual(await sdkHeaders(request, date, CREDENTIALS));
    // With a session token (Lambda's credentials), from a provider as the SDK's client config gives them.
    const session = { ...CREDENTIALS, sessionToken: "FwoGZXIvYXdzEJr//////////wEaDM+token=" };
    const withToken = await new SigV4Signer("s3", "eu-west-1", () => Promise.resolve(session)).sign(request, date);
    expect(withToken).toEqual(await sdkHeaders(request, date, session));
    expect(withToken["x-amz-security-token"]).toBe(session.sessionToken);
  });

  it("derives the signing key once a day: reused for every request of the day, derived again on a new day or with new credentials", async () => {
    const derived: string[] = [];
    let credentials = CREDENTIALS;
    const signer = new SigV4Signer("sqs", "us-east-1", () => Promise.resolve(credentials), {
      derive: (secret, day, region, service) => {
        derived.push(`${day} ${secret}`);
        return deriveSigningKey(secret, day, region, service);
      },
    });
    const put = REQUESTS[0]?.[1];
    if (!put) throw new Error("requests");
    const sign = async (iso: string) => {
      const date = new Date(iso);
      const headers = await signer.sign(put, date);
      expect(headers).toEqual(await sdkHeaders(put, date, credentials, "sqs", "us-east-1"));
    };
    await sign("2026-11-30T00:00:00.000Z");
    await sign("2026-11-30T12:00:00.000Z");
    await sign("2026-11-30T23:59:59.999Z");
    expect(derived).toEqual([`20261130 ${CREDENTIALS.secretAccessKey}`]);
    await sign("2026-12-01T00:00:00.000Z");
    await sign("2026-12-01T08:00:00.000Z");
    expect(derived).toEqual([`20261130 ${CREDENTIALS.secretAccessKey}`, `20261201 ${CREDENTIALS.secretAccessKey}`]);
    credentials = { ...CREDENTIALS, secretAccessKey: "rotated" };
    await sign("2026-12-01T09:00:00.000Z");
    expect(derived).toEqual([`20261130 ${CREDENTIALS.secretAccessKey}`, `20261201 ${CREDENTIALS.secretAccessKey}`, "20261201 rotated"]);
  });

  it("derives the key of the SigV4 specification's example", () => {
    // AWS's documented example: secret wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20120215, us-east-1, iam.
    expect(deriveSigningKey("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215", "us-east-1", "iam").toString("hex")).toBe("f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
  });
});
