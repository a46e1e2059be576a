// What S3Store's writes answer: the version (x-amz-version-id) and ETag S3
// returned, on each of its paths (a direct PutObject, a PutObject in parts, a
// CopyObject), checked against a fake S3 that answers like a versioned
// bucket, and like an unversioned one (version "null").

import { S3Client } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { MULTIPART_THRESHOLD } from "../../lambdas/s3-multipart.ts";
import { DirectS3Store } from "../../lambdas/store/direct-s3-store.ts";
import type { S3Store } from "../../lambdas/store/s3-store.ts";
import { captureServerForTests } from "../support/capture-server.ts";

const capture = captureServerForTests();

function store(): S3Store {
  const client = new S3Client({ region: "us-east-1", endpoint: capture.server.endpoint, forcePathStyle: true, credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxAttempts: 1 });
  // The direct store: its small puts are direct requests, its puts in parts and copies go through the SDK.
  return new DirectS3Store(client, "b");
}

/** Answers every write like S3 does, naming `version` as the version written. */
function serveWrites(version: string): void {
  let n = 0;
  capture.server.responder = (request, res) => {
    const url = new URL(request.url, "http://x");
    n += 1;
    const xml = (body: string, headers: Record<string, string> = {}) => {
      res.writeHead(200, { "content-type": "application/xml", ...headers });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`);
    };
    if (request.method === "POST" && url.searchParams.has("uploads")) return xml(`<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>`);
    if (request.method === "PUT" && url.searchParams.has("partNumber")) {
      res.writeHead(200, { etag: `"part-${url.searchParams.get("partNumber")}"` });
      return res.end();
    }
    if (request.method === "POST" && url.searchParams.has("uploadId")) {
      return xml(`<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>"parts-2"</ETag></CompleteMultipartUploadResult>`, { "x-amz-version-id": `${version}` });
    }
    if (request.method === "PUT" && request.headers["x-amz-copy-source"]) {
      return xml(`<CopyObjectResult><ETag>"copied"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></CopyObjectResult>`, { "x-amz-version-id": version });
    }
    res.writeHead(200, { etag: `"put-${n}"`, "x-amz-version-id": version });
    res.end();
  };
}

describe("S3Store writes answer what S3 made", () => {
  it("on a versioned bucket: the version id and ETag of a direct put, a put in parts and a copy", async () => {
    serveWrites("3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH");
    const s3 = store();
    expect(await s3.put("data/s/f", Buffer.from("small"))).toEqual({ versionId: "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH", etag: '"put-1"' });
    expect(await s3.put("data/s/large", Buffer.alloc(MULTIPART_THRESHOLD + 1))).toEqual({ versionId: "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH", etag: '"parts-2"' });
    expect(await s3.copy("data/s/f", "data/s/g", {})).toEqual({ versionId: "3HL4kqtJlcpXroDTDmJ-rmSpXd3dIbrH", etag: '"copied"' });
    expect(capture.server.requests.map((r) => r.method)).toEqual(["PUT", "POST", "PUT", "PUT", "POST", "PUT"]);
  });

  it('on an unversioned bucket (version "null"): the ETag alone', async () => {
    serveWrites("null");
    const s3 = store();
    expect(await s3.put("data/s/f", Buffer.from("small"))).toEqual({ etag: '"put-1"' });
    expect(await s3.put("data/s/large", Buffer.alloc(MULTIPART_THRESHOLD + 1))).toEqual({ etag: '"parts-2"' });
    expect(await s3.copy("data/s/f", "data/s/g", {})).toEqual({ etag: '"copied"' });
  });
});
