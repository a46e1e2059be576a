import { createHash } from "node:crypto";
import type { ServerResponse } from "node:http";
import { GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { getEndpointFromInstructions } from "@smithy/core/endpoints";
import type { EndpointV2 } from "@smithy/types";
import { describe, expect, it } from "vitest";
import { encodeKeyPath, S3ObjectRequests } from "../../lambdas/s3-object-requests.ts";
import { AwsRequestError, plainSigV4Target } from "../../lambdas/signed-requests.ts";
import { DirectS3Store } from "../../lambdas/store/direct-s3-store.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { captureServerForTests } from "../support/capture-server.ts";
import { checkSigV4, type WireRequest } from "../support/sigv4.ts";

const CREDENTIALS = { accessKeyId: "AKIDTIDEMARKTEST", secretAccessKey: "tidemark/secret+key" };
const BUCKET = "bucket-1";

/** Keys a protected tree can hold: every character S3's REST paths and SigV4 treat specially. */
const HOSTILE_KEYS = [
  "plain/file.txt",
  "space in name/and more.txt",
  "plus+percent%25/%literal",
  "query?hash#amp&eq=semi;colon,",
  "unreserved-._~/sub-delims!$'()*@:",
  "ünïcødé/日本語/😀.bin",
  "new\nline\ttab",
  "back\\slash/\"quote\"<angle>`tick`^caret|pipe{brace}[bracket]",
];

function clientFor(endpoint: string, settings: { maxAttempts?: number; credentials?: typeof CREDENTIALS } = {}): S3Client {
  return new S3Client({
    region: "eu-west-1",
    endpoint,
    forcePathStyle: true,
    credentials: CREDENTIALS,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    ...settings,
  });
}

function s3Error(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/xml", "x-amz-request-id": "REQ123", ...headers });
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message><RequestId>REQ123</RequestId></Error>`);
}

/** The SDK adds x-id=<Operation> to some S3 requests' query, for S3's logs only. */
function withoutOperationId(url: string): string {
  return url.replace(/[?&]x-id=[A-Za-z]+$/, "");
}

async function open(client: S3Client): Promise<S3ObjectRequests> {
  const requests = await S3ObjectRequests.open(client, BUCKET, { retryBaseMs: 1 });
  if (!requests) throw new Error("expected a plain SigV4 endpoint");
  return requests;
}

const capture = captureServerForTests();

describe("requests on the wire", () => {
  it("sends each hostile key on the path the SDK uses, signed so that S3's own check accepts it", async () => {
    const client = clientFor(capture.server.endpoint);
    const direct = await open(client);
    try {
      for (const key of HOSTILE_KEYS) {
        const body = Buffer.from(`body of ${key}`);
        await client.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body, Metadata: { mtime: "1700000000000", Mode: "420" } }));
        await direct.put(key, body, { mtime: "1700000000000", Mode: "420" });
        const [viaSdk, viaDirect] = capture.server.requests.splice(0, 2) as [WireRequest, WireRequest];

        expect(viaDirect.method).toBe("PUT");
        expect(viaDirect.url, key).toBe(withoutOperationId(viaSdk.url));
        expect(decodeURIComponent(viaDirect.url.slice(`/${BUCKET}/`.length))).toBe(key);
        expect(viaDirect.body.equals(body)).toBe(true);
        for (const name of ["x-amz-meta-mtime", "x-amz-meta-mode", "content-length", "content-type", "x-amz-content-sha256"]) {
          expect(viaDirect.headers[name], name).toBe(viaSdk.headers[name]);
        }
        const sdkCheck = checkSigV4(viaSdk, CREDENTIALS.secretAccessKey);
        const directCheck = checkSigV4(viaDirect, CREDENTIALS.secretAccessKey);
        expect(sdkCheck.ok, sdkCheck.reason).toBe(true);
        expect(directCheck.ok, directCheck.reason).toBe(true);
        expect(directCheck.signedHeaders).toEqual(expect.arrayContaining(["host", "x-amz-content-sha256", "x-amz-date", "x-amz-meta-mtime", "x-amz-meta-mode"]));
      }
    } finally {
      direct.close();
    }
  });

  it("signs GET (with a version), HEAD and DELETE like the SDK, query included", async () => {
    const client = clientFor(capture.server.endpoint);
    const direct = await open(client);
    const key = "query?hash#amp&eq=semi;colon,";
    try {
      await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: key, VersionId: "v+1/=" }));
      await direct.get(key, "v+1/=");
      await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
      await direct.head(key);
      await direct.delete(key);
      const [sdkGet, directGet, sdkHead, directHead, directDelete] = capture.server.requests as [WireRequest, WireRequest, WireRequest, WireRequest, WireRequest];
      expect(directGet.url).toBe(withoutOperationId(sdkGet.url));
      expect(directGet.url).toContain("versionId=v%2B1%2F%3D");
      expect(directHead.url).toBe(withoutOperationId(sdkHead.url));
      expect(directDelete.method).toBe("DELETE");
      for (const request of [directGet, directHead, directDelete]) {
        const check = checkSigV4(request, CREDENTIALS.secretAccessKey);
        expect(check.ok, check.reason).toBe(true);
        expect(request.body.length).toBe(0);
      }
    } finally {
      direct.close();
    }
  });

  it("would catch a wrong signature: the checker refuses a request signed with another secret", async () => {
    const direct = await open(clientFor(capture.server.endpoint, { credentials: { ...CREDENTIALS, secretAccessKey: "other" } }));
    try {
      await direct.put("k", Buffer.from("x"), {});
      const [request] = capture.server.requests;
      expect(request && checkSigV4(request, CREDENTIALS.secretAccessKey).ok).toBe(false);
    } finally {
      direct.close();
    }
  });

  it("signs a PUT's SHA-256 checksum as its payload hash, so that S3 checks the body against the one hash twice (it is not hashed again)", async () => {
    const direct = await open(clientFor(capture.server.endpoint));
    try {
      const body = Buffer.from("the bytes the applier checked");
      const sha256 = createHash("sha256").update(body).digest();
      await direct.put("checked", body, {}, sha256.toString("base64"));
      // A claim that does not match the body is signed as it is: S3 refuses it (XAmzContentSHA256Mismatch, BadDigest).
      const other = createHash("sha256").update("other bytes").digest();
      await direct.put("claimed", body, {}, other.toString("base64"));
      const [checked, claimed] = capture.server.requests.splice(0, 2) as [WireRequest, WireRequest];
      expect(checked.headers["x-amz-content-sha256"]).toBe(sha256.toString("hex"));
      expect(checked.headers["x-amz-checksum-sha256"]).toBe(sha256.toString("base64"));
      expect(claimed.headers["x-amz-content-sha256"]).toBe(other.toString("hex"));
      const check = checkSigV4(checked, CREDENTIALS.secretAccessKey);
      expect(check.ok, check.reason).toBe(true);
      expect(check.signedHeaders).toContain("x-amz-content-sha256");
    } finally {
      direct.close();
    }
  });

  it("percent-encodes every reserved character of a key segment and keeps the slashes", () => {
    expect(encodeKeyPath("a b/c+d/!'()*~")).toBe("a%20b/c%2Bd/%21%27%28%29%2A~");
    // A key of unreserved characters is its own path; one reserved character anywhere and every segment is encoded.
    expect(encodeKeyPath("data/set-1/d_0/f.1~x/")).toBe("data/set-1/d_0/f.1~x/");
    expect(encodeKeyPath("data/100%/é:x")).toBe("data/100%25/%C3%A9%3Ax");
  });
});

describe("answers and retries", () => {
  it("retries SlowDown and goes on when S3 accepts", async () => {
    let answered = 0;
    capture.server.responder = (_request, res) => {
      if (answered++ < 2) s3Error(res, 503, "SlowDown", "Please reduce your request rate.");
      else res.end();
    };
    const direct = await open(clientFor(capture.server.endpoint));
    try {
      await direct.put("k", Buffer.from("x"), {});
      expect(capture.server.requests).toHaveLength(3);
    } finally {
      direct.close();
    }
  });

  it("retries a dropped connection", async () => {
    let answered = 0;
    capture.server.responder = (_request, res) => {
      if (answered++ === 0) res.socket?.destroy();
      else res.end();
    };
    const direct = await open(clientFor(capture.server.endpoint));
    try {
      await direct.put("k", Buffer.from("x"), {});
      expect(capture.server.requests).toHaveLength(2);
    } finally {
      direct.close();
    }
  });

  it("does not retry a refusal, and names it like the SDK would", async () => {
    capture.server.responder = (_request, res) => s3Error(res, 403, "AccessDenied", "Access Denied to &quot;k&quot; &amp; more");
    const direct = await open(clientFor(capture.server.endpoint));
    try {
      const error = await direct.put("k", Buffer.from("x"), {}).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AwsRequestError);
      expect(error).toMatchObject({ name: "AccessDenied", message: 'Access Denied to "k" & more', $metadata: { httpStatusCode: 403, requestId: "REQ123" } });
      expect(capture.server.requests).toHaveLength(1);
    } finally {
      direct.close();
    }
  });

  it("stops at the client's maxAttempts", async () => {
    capture.server.responder = (_request, res) => s3Error(res, 500, "InternalError", "We encountered an internal error.");
    for (const [maxAttempts, expected] of [[1, 1], [3, 3]] as const) {
      capture.server.requests.length = 0;
      const direct = await open(clientFor(capture.server.endpoint, { maxAttempts }));
      try {
        await expect(direct.put("k", Buffer.from("x"), {})).rejects.toMatchObject({ name: "InternalError", $metadata: { httpStatusCode: 500 } });
        expect(capture.server.requests).toHaveLength(expected);
      } finally {
        direct.close();
      }
    }
  });

  it("reads only the start of an error's endless body (a broken or hostile endpoint), and says so in the error, for each attempt", async () => {
    const guard = 256 * 1024 * 1024;
    let sent = 0;
    capture.server.responder = (_request, res) => {
      res.writeHead(500, { "content-type": "application/xml" });
      res.write("<Error><Code>InternalError</Code><Message>");
      const block = Buffer.alloc(60 * 1024, "m");
      let mine = 0;
      const pump = () => {
        while (!res.destroyed && mine < guard) {
          mine += block.length;
          sent += block.length;
          if (!res.write(block)) {
            res.once("drain", pump);
            return;
          }
        }
        if (!res.destroyed) res.end("</Message></Error>");
      };
      res.on("error", () => undefined);
      pump();
    };
    const direct = await open(clientFor(capture.server.endpoint, { maxAttempts: 2 }));
    try {
      const error = await direct.get("k").catch((e: unknown) => e);
      expect(error).toBeInstanceOf(AwsRequestError);
      expect(error).toMatchObject({ name: "InternalError", $metadata: { httpStatusCode: 500 } });
      expect((error as Error).message).toMatch(/^S3 answered 500 \(the answer's body was longer than 64 KiB: only its start was read, and the connection dropped\)$/);
      expect(capture.server.requests).toHaveLength(2);
      // Two attempts, each dropped after 64 KiB: the server sent no more than the sockets' buffers took, not the body.
      expect(sent).toBeLessThan(64 * 1024 * 1024);
    } finally {
      direct.close();
    }
  });

  it("names a body-less error from its status (HEAD of a missing object)", async () => {
    capture.server.responder = (_request, res) => {
      res.writeHead(404);
      res.end();
    };
    const direct = await open(clientFor(capture.server.endpoint));
    try {
      await expect(direct.head("missing")).rejects.toMatchObject({ name: "NotFound", $metadata: { httpStatusCode: 404 } });
    } finally {
      direct.close();
    }
  });

  it("corrects a skewed clock from S3's Date and signs the retry (and the SDK's later requests) with it", async () => {
    const serverAhead = 60 * 60_000;
    capture.server.responder = (request, res) => {
      const serverNow = Date.now() + serverAhead;
      const signedAt = Date.parse(String(request.headers["x-amz-date"]).replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, "$1-$2-$3T$4:$5:$6Z"));
      if (Math.abs(signedAt - serverNow) > 15 * 60_000) {
        s3Error(res, 403, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large.", { date: new Date(serverNow).toUTCString() });
      } else res.end();
    };
    const client = clientFor(capture.server.endpoint);
    const direct = await open(client);
    try {
      await direct.put("k", Buffer.from("x"), {});
      expect(capture.server.requests).toHaveLength(2);
      expect(Math.abs(client.config.systemClockOffset - serverAhead)).toBeLessThan(5_000);
    } finally {
      direct.close();
    }
  });
});

describe("which endpoints are served directly", () => {
  const sigv4 = { name: "sigv4", signingName: "s3", signingRegion: "eu-west-1", disableDoubleEncoding: true };
  const url = new URL("https://bucket-1.s3.eu-west-1.amazonaws.com");
  /** An endpoint as S3's rules give it: their auth schemes are flat objects, not the AuthScheme type smithy declares. */
  const endpoint = (scheme?: Record<string, unknown>, headers?: Record<string, string[]>) =>
    ({ url, ...(headers ? { headers } : {}), properties: scheme ? { authSchemes: [scheme] } : {} }) as unknown as EndpointV2;

  it("takes a plain SigV4 endpoint and refuses one that needs more", () => {
    expect(plainSigV4Target(endpoint(sigv4))).toEqual({ url, signingName: "s3", signingRegion: "eu-west-1" });
    expect(plainSigV4Target(endpoint({ ...sigv4, name: "sigv4a", signingRegionSet: ["*"] }))).toBeUndefined();
    expect(plainSigV4Target(endpoint({ ...sigv4, name: "sigv4-s3express" }))).toBeUndefined();
    expect(plainSigV4Target(endpoint({ ...sigv4, disableDoubleEncoding: false }))).toBeUndefined();
    expect(plainSigV4Target(endpoint(sigv4, { "x-amz-extra": ["1"] }))).toBeUndefined();
    expect(plainSigV4Target(endpoint())).toBeUndefined();
    // A service whose rules name no auth scheme (SQS) is signed as the caller says.
    expect(plainSigV4Target(endpoint(), { signingName: "sqs", signingRegion: "eu-west-1" })).toEqual({ url, signingName: "sqs", signingRegion: "eu-west-1" });
    expect(plainSigV4Target(endpoint({ ...sigv4, name: "sigv4a" }), { signingName: "sqs", signingRegion: "eu-west-1" })).toBeUndefined();
  });

  it("resolves AWS endpoints with the SDK's rules: a regional bucket directly, a multi-region access point (SigV4a) through the SDK", async () => {
    const client = new S3Client({ region: "eu-west-1", credentials: CREDENTIALS });
    const regional = plainSigV4Target(await getEndpointFromInstructions({ Bucket: "my-mirror", Key: "-" }, PutObjectCommand, client.config));
    expect(regional?.url.host).toBe("my-mirror.s3.eu-west-1.amazonaws.com");
    expect(regional?.signingRegion).toBe("eu-west-1");
    expect(await S3ObjectRequests.open(client, "arn:aws:s3::123456789012:accesspoint/mfzwi23gnjvgw.mrap")).toBeUndefined();
  });

  it("uses no SDK request for objects through S3Store once the endpoint is plain SigV4", async () => {
    const emulator = await startTestEmulator();
    try {
      const client = clientFor(emulator.endpoint);
      const store = new DirectS3Store(client, emulator.newBucket());
      let sdkRequests = 0;
      const send = client.send.bind(client);
      client.send = ((command: Parameters<typeof send>[0]) => {
        sdkRequests++;
        return send(command);
      }) as typeof client.send;

      await store.put("dir/ä b+c.txt", Buffer.from("hello"), { mtime: "1", mode: "420" });
      await store.put("empty", Buffer.alloc(0), {});
      expect(await store.get("dir/ä b+c.txt")).toMatchObject({ body: Buffer.from("hello"), meta: { mtime: "1", mode: "420" } });
      expect((await store.get("empty"))?.body.length).toBe(0);
      expect(await store.head("dir/ä b+c.txt")).toEqual({ key: "dir/ä b+c.txt", size: 5, meta: { mtime: "1", mode: "420" } });
      await store.delete("dir/ä b+c.txt");
      expect(await store.get("dir/ä b+c.txt")).toBeUndefined();
      expect(await store.head("dir/ä b+c.txt")).toBeUndefined();
      expect(sdkRequests).toBe(0);
      // What the SDK lists is what went in directly.
      const keys: string[] = [];
      for await (const info of store.list("")) keys.push(info.key);
      expect(keys).toEqual(["empty"]);
    } finally {
      await emulator.server.stop();
    }
  });
});
