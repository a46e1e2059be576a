// A bucket with S3 Object Lock (tidemark:immutableDays) refuses every PUT of
// content without an integrity checksum (Content-MD5 or x-amz-checksum-*):
// "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object
// requests with Object Lock parameters", for single PUTs and for parts alike.
// Each place tidemark writes object content, the applier's and the agent's,
// is sent here to a server that refuses as such a bucket does, and must get
// through, with a checksum that matches what it sent.

import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import type { ServerResponse } from "node:http";
import { join } from "node:path";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { SQSClient } from "@aws-sdk/client-sqs";
import { describe, expect, it } from "vitest";
import { checkStage } from "../../agent/doctor.ts";
import type { AgentConfig } from "../../agent/config.ts";
import { AwsTransport } from "../../agent/transport/aws.ts";
import { MULTIPART_THRESHOLD } from "../../lambdas/s3-multipart.ts";
import { DirectS3Store } from "../../lambdas/store/direct-s3-store.ts";
import { captureServerForTests } from "../support/capture-server.ts";
import type { WireRequest } from "../support/sigv4.ts";
import { tempDir } from "../support/tree.ts";
import { sha256Of as sha } from "../support/content.ts";

const BUCKET = "locked-bucket";
const CREDENTIALS = { accessKeyId: "AKIDTIDEMARKTEST", secretAccessKey: "secret" };

function s3Client(endpoint: string): S3Client {
  // As aws-clients.ts makes them: no checksum the SDK adds on its own.
  return new S3Client({ region: "eu-west-1", endpoint, forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" });
}

function header(request: WireRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Why S3 would refuse this content upload to an Object Lock bucket, or undefined when it carries a checksum that matches. */
function lockRefusal(request: WireRequest): string | undefined {
  const md5 = header(request, "content-md5");
  const sha256 = header(request, "x-amz-checksum-sha256");
  const others = Object.keys(request.headers).filter((name) => /^x-amz-checksum-(crc32|crc32c|crc64nvme|sha1)$/.test(name));
  if (md5 === undefined && sha256 === undefined && others.length === 0) return "Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters";
  if (md5 !== undefined && md5 !== createHash("md5").update(request.body).digest("base64")) return "The Content-MD5 you specified did not match what we received.";
  if (sha256 !== undefined && sha256 !== createHash("sha256").update(request.body).digest("base64")) return "The SHA256 you specified did not match the calculated checksum.";
  return undefined;
}

function xml(res: ServerResponse, body: string): void {
  res.writeHead(200, { "content-type": "application/xml", etag: '"etag"' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`);
}

/** Answers as a bucket with Object Lock default retention does to the object calls tidemark makes. */
function objectLockBucket(request: WireRequest, res: ServerResponse): void {
  const url = new URL(request.url, "http://bucket");
  const query = url.searchParams;
  const copy = header(request, "x-amz-copy-source") !== undefined;
  if (request.method === "POST" && query.has("uploads")) return xml(res, `<InitiateMultipartUploadResult><Bucket>${BUCKET}</Bucket><Key>k</Key><UploadId>upload-1</UploadId></InitiateMultipartUploadResult>`);
  if (request.method === "POST" && query.has("uploadId")) return xml(res, '<CompleteMultipartUploadResult><ETag>"etag-2"</ETag></CompleteMultipartUploadResult>');
  if (request.method === "PUT" && copy) return xml(res, query.has("partNumber") ? '<CopyPartResult><ETag>"etag"</ETag></CopyPartResult>' : '<CopyObjectResult><ETag>"etag"</ETag></CopyObjectResult>');
  if (request.method === "PUT") {
    const refusal = lockRefusal(request);
    if (refusal !== undefined) {
      res.writeHead(400, { "content-type": "application/xml" });
      res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InvalidRequest</Code><Message>${refusal}</Message></Error>`);
      return;
    }
    res.writeHead(200, { etag: '"etag"', "x-amz-version-id": "v1", ...(header(request, "x-amz-checksum-sha256") ? { "x-amz-checksum-sha256": header(request, "x-amz-checksum-sha256") } : {}) });
    res.end();
    return;
  }
  res.writeHead(204);
  res.end();
}

const capture = captureServerForTests();

/** The content uploads that reached the bucket: PUTs that are not server-side copies. */
const contentPuts = () => capture.server.requests.filter((r) => r.method === "PUT" && header(r, "x-amz-copy-source") === undefined);

describe("writes to a bucket with Object Lock", () => {
  it("are refused without a checksum (the stand-in refuses as S3 does)", async () => {
    capture.server.responder = objectLockBucket;
    const s3 = s3Client(capture.server.endpoint);
    await expect(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "k", Body: "x" }))).rejects.toThrow(/Content-MD5 OR x-amz-checksum- HTTP header is required/);
    await expect(s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: "k", Body: "x", ChecksumSHA256: createHash("sha256").update("y").digest("base64") }))).rejects.toThrow(/did not match/);
    s3.destroy();
  });

  it("the applier's: single puts (direct requests), puts in parts, copies", async () => {
    capture.server.responder = objectLockBucket;
    const s3 = s3Client(capture.server.endpoint);
    const store = new DirectS3Store(s3, BUCKET, { retryBaseMs: 1 });
    await store.put("data/www/index.html", Buffer.from("<h1>hello</h1>"), { "tidemark-mode": "644" });
    await store.put("state/www/status.json", Buffer.from("{}"));
    await store.put("data/www/empty/", new Uint8Array());
    await store.put("blocks/vm/data/big", Buffer.alloc(MULTIPART_THRESHOLD + 1024, 7));
    await store.copy("staging/www/1.abc", "data/www/big.bin", {});
    // Three single puts and two parts, each with its checksum.
    expect(contentPuts()).toHaveLength(5);
    expect(contentPuts().map(lockRefusal)).toEqual([undefined, undefined, undefined, undefined, undefined]);
    s3.destroy();
  });

  it("the agent's: staged payloads from memory, from a spool file, and in parts", async () => {
    capture.server.responder = objectLockBucket;
    const dir = tempDir();
    const s3 = s3Client(capture.server.endpoint);
    const sqs = new SQSClient({ region: "eu-west-1", endpoint: capture.server.endpoint, credentials: CREDENTIALS });
    try {
      const transport = new AwsTransport({ sqs, s3, queueUrl: `${capture.server.endpoint}/000000000000/q.fifo`, bucket: BUCKET });
      const small = Buffer.from("staged content");
      await transport.stage({ set: "www", key: `staging/www/1.${sha(small)}`, sha256: sha(small), size: small.length, source: { bytes: small } });
      const spooled = Buffer.alloc(300_000, 3);
      const file = join(dir.path, "spool");
      writeFileSync(file, spooled);
      await transport.stage({ set: "www", key: `staging/www/2.${sha(spooled)}`, sha256: sha(spooled), size: spooled.length, source: { file } });
      const large = Buffer.alloc(MULTIPART_THRESHOLD + 10, 9);
      await transport.stage({ set: "www", key: `staging/www/3.${sha(large)}`, sha256: sha(large), size: large.length, source: { bytes: large } });
      expect(contentPuts()).toHaveLength(4);
      expect(contentPuts().map(lockRefusal)).toEqual([undefined, undefined, undefined, undefined]);
    } finally {
      s3.destroy();
      sqs.destroy();
      dir.remove();
    }
  });

  it("tidemark doctor's staging check", async () => {
    capture.server.responder = objectLockBucket;
    const s3 = s3Client(capture.server.endpoint);
    const config: Pick<AgentConfig, "bucket"> = { bucket: BUCKET };
    const check = await checkStage(s3, config, "www");
    expect(check).toMatchObject({ level: "ok" });
    expect(contentPuts().map(lockRefusal)).toEqual([undefined]);
    s3.destroy();
  });
});
