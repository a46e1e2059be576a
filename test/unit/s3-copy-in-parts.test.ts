// A copy of an object over 5 GiB: S3 refuses CopyObject for it (400
// InvalidRequest), so S3Store.copy copies it server-side in parts
// (UploadPartCopy over contiguous ranges, each pinned to the source's ETag).
// Checked on the wire against a fake S3, and for the bytes on the emulator.

import { GetObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { copyInParts, COPY_PART_BYTES } from "../../lambdas/s3-multipart.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { ObjectNotFoundError } from "../../lambdas/store/store.ts";
import { captureServerForTests } from "../support/capture-server.ts";
import { startTestEmulator } from "../support/fauxqs.ts";

const capture = captureServerForTests();
const SIZE = 12 * 1024 ** 3 + 5;
const TOO_LARGE = "The specified copy source is larger than the maximum allowable size for a copy source: 5368709120";

function fakeClient(): S3Client {
  return new S3Client({ region: "us-east-1", endpoint: capture.server.endpoint, forcePathStyle: true, credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxAttempts: 1 });
}

/** Answers like S3 for a 12 GiB source "big file": CopyObject refused, then the multipart copy. */
function serveLargeSource(): void {
  capture.server.responder = (request, res) => {
    const url = new URL(request.url, "http://x");
    const xml = (status: number, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { "content-type": "application/xml", ...headers });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`);
    };
    if (request.method === "HEAD") {
      if (!url.pathname.endsWith("/big%20file")) return xml(404, "");
      res.writeHead(200, { "content-length": String(SIZE), etag: '"src-etag-3"' });
      return res.end();
    }
    if (request.method === "PUT" && request.headers["x-amz-copy-source"] && !url.searchParams.has("partNumber")) {
      return xml(400, `<Error><Code>InvalidRequest</Code><Message>${TOO_LARGE}</Message><RequestId>R</RequestId></Error>`);
    }
    if (request.method === "POST" && url.searchParams.has("uploads")) {
      return xml(200, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>`);
    }
    if (request.method === "PUT" && url.searchParams.has("partNumber")) {
      return xml(200, `<CopyPartResult><ETag>"part-${url.searchParams.get("partNumber")}"</ETag><LastModified>2026-01-01T00:00:00.000Z</LastModified></CopyPartResult>`);
    }
    if (request.method === "POST" && url.searchParams.has("uploadId")) {
      return xml(200, `<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>"done-24"</ETag></CompleteMultipartUploadResult>`, { "x-amz-version-id": "version-of-copy" });
    }
    xml(500, "<Error><Code>Unexpected</Code></Error>");
  };
}

describe("S3Store.copy of a source over 5 GiB", () => {
  it("copies it in contiguous ranges of the source's version, with the new metadata", async () => {
    serveLargeSource();
    const written = await new S3Store(fakeClient(), "b").copy("staging/s/big file", "data/s/dest", { "tidemark-kind": "file" });
    // What CompleteMultipartUpload made: the history names that version.
    expect(written).toEqual({ versionId: "version-of-copy", etag: '"done-24"' });
    const requests = capture.server.requests.map((r) => ({ ...r, url: new URL(r.url, "http://x") }));
    expect(requests.map((r) => `${r.method} ${r.url.searchParams.has("partNumber") ? "part" : r.url.searchParams.has("uploads") ? "create" : r.url.searchParams.has("uploadId") ? "complete" : "object"}`)).toEqual([
      "PUT object",
      "HEAD object",
      "POST create",
      ...Array.from({ length: Math.ceil(SIZE / COPY_PART_BYTES) }, () => "PUT part"),
      "POST complete",
    ]);
    const create = requests[2];
    expect(create?.url.pathname).toBe("/b/data/s/dest");
    expect(create?.headers["x-amz-meta-tidemark-kind"]).toBe("file");
    const parts = requests.filter((r) => r.url.searchParams.has("partNumber"));
    let next = 0;
    parts.forEach((part, i) => {
      expect(part.url.searchParams.get("partNumber")).toBe(String(i + 1));
      expect(part.headers["x-amz-copy-source"]).toBe("b/staging/s/big%20file");
      expect(part.headers["x-amz-copy-source-if-match"]).toBe('"src-etag-3"');
      const [start, end] = String(part.headers["x-amz-copy-source-range"]).replace("bytes=", "").split("-").map(Number);
      expect(start).toBe(next);
      next = (end ?? 0) + 1;
    });
    expect(next).toBe(SIZE);
    const complete = requests.at(-1)?.body.toString("utf8") ?? "";
    expect(complete.match(/<PartNumber>\d+<\/PartNumber>/g)).toHaveLength(parts.length);
    expect(complete).toMatch(/<ETag>(&quot;|")part-24(&quot;|")<\/ETag>/);
  });

  it("fails with ObjectNotFoundError when the source vanished before its copy in parts", async () => {
    serveLargeSource();
    await expect(new S3Store(fakeClient(), "b").copy("staging/s/other", "data/s/dest", {})).rejects.toThrow(ObjectNotFoundError);
  });
});

describe("copyInParts on the emulator", () => {
  it("copies the bytes range by range into an object with the given metadata", async () => {
    const emulator = await startTestEmulator();
    const s3 = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint });
    try {
      const bucket = emulator.newBucket();
      const body = randomBytes(10 * 1024 * 1024 + 3);
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "src ü", Body: body }));
      await copyInParts(s3, { bucket, key: "dest", copySource: `${bucket}/${encodeURIComponent("src ü")}`, size: body.length, metadata: { a: "1" }, partBytes: 5 * 1024 * 1024 });
      const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dest" }));
      expect(Buffer.from(await out.Body?.transformToByteArray() ?? []).equals(body)).toBe(true);
      expect(out.Metadata).toEqual({ a: "1" });
      expect(out.ETag).toMatch(/-3"$/);
    } finally {
      s3.destroy();
      await emulator.server.stop();
    }
  });
});
