// The local emulator checks every checksum a PutObject or UploadPart sends
// (and a Content-MD5) as S3 does: a mismatch is refused with BadDigest and
// writes nothing, on versioned and unversioned buckets, in memory and in
// files; a match is kept and read back with a HEAD.

import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { checksumOf, checksumRefusal, crc32c, crc64nvme } from "../../lambdas/local/emulator-checksums.ts";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { tempDir } from "../support/tree.ts";

const dir = tempDir();
let emulator: Emulator | undefined;
afterEach(async () => {
  await emulator?.stop();
  emulator = undefined;
});
afterAll(() => dir.remove());

const CHECK = Buffer.from("123456789");

it("computes CRC-32C and CRC-64/NVME as their check values say", () => {
  expect(crc32c(CHECK)).toBe(0xe3069283);
  expect(crc64nvme(CHECK)).toBe(0xae8b14860a799888n);
  const value = Buffer.alloc(4);
  value.writeUInt32BE(crc32(CHECK));
  expect(checksumOf("crc32", CHECK)).toBe(value.toString("base64"));
});

it("checks a trailing checksum of an aws-chunked body against its payload", () => {
  const payload = Buffer.from("hello, chunks");
  const chunked = (checksum: string) =>
    Buffer.from(`5\r\nhello\r\n${(payload.length - 5).toString(16)}\r\n${payload.subarray(5).toString()}\r\n0\r\nx-amz-checksum-sha256:${checksum}\r\n\r\n`);
  const headers = { "content-encoding": "aws-chunked", "x-amz-trailer": "x-amz-checksum-sha256" };
  expect(checksumRefusal(headers, chunked(checksumOf("sha256", payload)))).toBeUndefined();
  expect(checksumRefusal(headers, chunked(checksumOf("sha256", Buffer.from("other"))))?.code).toBe("BadDigest");
  expect(checksumRefusal(headers, Buffer.from("5\r\nhel"))?.code).toBe("IncompleteBody");
});

it("checks a body that came in chunks as it checks the joined body, for every algorithm and a Content-MD5", () => {
  const body = randomBytes(3 * 65_536 + 17);
  const chunks = [body.subarray(0, 65_536), body.subarray(65_536, 2 * 65_536 + 5), body.subarray(2 * 65_536 + 5)];
  const other = Buffer.concat([body.subarray(0, 100), Buffer.from([body[100] === 0 ? 1 : 0]), body.subarray(101)]);
  for (const algorithm of ["crc32", "crc32c", "crc64nvme", "sha1", "sha256"] as const) {
    expect(checksumRefusal({ [`x-amz-checksum-${algorithm}`]: checksumOf(algorithm, body) }, chunks)).toBeUndefined();
    expect(checksumRefusal({ [`x-amz-checksum-${algorithm}`]: checksumOf(algorithm, other) }, chunks)?.code).toBe("BadDigest");
  }
  const md5 = (bytes: Buffer) => createHash("md5").update(bytes).digest("base64");
  expect(checksumRefusal({ "content-md5": md5(body) }, chunks)).toBeUndefined();
  expect(checksumRefusal({ "content-md5": md5(other) }, chunks)?.code).toBe("BadDigest");
});

async function refusal(promise: Promise<unknown>): Promise<{ name: string; status: number | undefined; message: string }> {
  const error: unknown = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!(error instanceof Error)) throw new Error("the request was not refused");
  const status = "$metadata" in error && typeof error.$metadata === "object" && error.$metadata !== null && "httpStatusCode" in error.$metadata ? error.$metadata.httpStatusCode : undefined;
  return { name: error.name, status: typeof status === "number" ? status : undefined, message: error.message };
}

async function absent(s3: S3Client, bucket: string, key: string): Promise<void> {
  expect((await refusal(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })))).status).toBe(404);
  const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: key }));
  expect([...(versions.Versions ?? []), ...(versions.DeleteMarkers ?? [])]).toEqual([]);
}

function hasHeaders(request: unknown): request is { headers: Record<string, string> } {
  return typeof request === "object" && request !== null && "headers" in request && typeof request.headers === "object" && request.headers !== null;
}

function hasQuery(request: unknown): request is { query: Record<string, string> } {
  return typeof request === "object" && request !== null && "query" in request && typeof request.query === "object" && request.query !== null;
}

/** A build step adding query parameters and headers of a test's own to what the SDK builds. */
function extras(query: Record<string, string>, headers: Record<string, string> = {}) {
  return <A extends { request: unknown }, R>(next: (args: A) => Promise<R>) =>
    async (args: A): Promise<R> => {
      if (hasQuery(args.request)) Object.assign(args.request.query, query);
      if (hasHeaders(args.request)) Object.assign(args.request.headers, headers);
      return next(args);
    };
}

function withExtras(command: PutObjectCommand, query: Record<string, string>): PutObjectCommand {
  command.middlewareStack.add(extras(query), { step: "build" });
  return command;
}

// A presigned URL's query: the SDK's own signature is in the header, these are what a URL would carry.
const PRESIGNED = { "X-Amz-Algorithm": "AWS4-HMAC-SHA256", "X-Amz-Credential": "AKID/20260101/us-east-1/s3/aws4_request", "X-Amz-Date": "20260101T000000Z", "X-Amz-SignedHeaders": "host", "X-Amz-Signature": "0".repeat(64) };

const ALGORITHMS = [
  ["crc32", "ChecksumCRC32"],
  ["crc32c", "ChecksumCRC32C"],
  ["crc64nvme", "ChecksumCRC64NVME"],
  ["sha1", "ChecksumSHA1"],
  ["sha256", "ChecksumSHA256"],
] as const;

// Bodies of 2 KiB: over a 1 KiB threshold the emulator keeps them in files, under the default in memory.
for (const versioned of [false, true]) {
  for (const [where, largeBodyBytes] of [["in files", 1024], ["in memory", undefined]] as const) {
    describe(`${versioned ? "versioned" : "unversioned"} bucket, bodies ${where}`, () => {
      const start = async () => {
        emulator = await startEmulator({ port: 0, dataDir: dir.path, versioned, ...(largeBodyBytes ? { largeBodyBytes } : {}) });
        const { bucket } = await ensureTargetResources({ endpoint: emulator.endpoint, region: "us-east-1", bucket: `b${Math.random().toString(36).slice(2, 10)}` });
        return { s3: makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }), bucket };
      };
      const body = Buffer.alloc(2048, 7);
      const other = Buffer.alloc(2048, 8);

      it("refuses a PutObject whose checksum does not match with BadDigest, writing nothing, and keeps one that matches", async () => {
        const { s3, bucket } = await start();
        for (const [algorithm, field] of ALGORITHMS) {
          const wrong = await refusal(s3.send(new PutObjectCommand({ Bucket: bucket, Key: `bad-${algorithm}`, Body: body, [field]: checksumOf(algorithm, other) })));
          expect(wrong).toEqual({ name: "BadDigest", status: 400, message: `The ${algorithm.toUpperCase()} you specified did not match the calculated checksum.` });
          await absent(s3, bucket, `bad-${algorithm}`);
          await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `good-${algorithm}`, Body: body, [field]: checksumOf(algorithm, body) }));
        }
        const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "good-sha256", ChecksumMode: "ENABLED" }));
        expect(head.ChecksumSHA256).toBe(checksumOf("sha256", body));
        expect(head.ContentLength).toBe(body.length);
        // A malformed value is S3's InvalidRequest, not a mismatch.
        expect((await refusal(s3.send(new PutObjectCommand({ Bucket: bucket, Key: "short", Body: body, ChecksumSHA256: "AAAA" })))).name).toBe("InvalidRequest");
        await absent(s3, bucket, "short");
      });

      it("refuses a PutObject whose Content-MD5 does not match, and an overwrite leaves the object it would replace", async () => {
        const { s3, bucket } = await start();
        const md5 = (bytes: Buffer) => createHash("md5").update(bytes).digest("base64");
        expect((await refusal(s3.send(new PutObjectCommand({ Bucket: bucket, Key: "m", Body: body, ContentMD5: md5(other) })))).name).toBe("BadDigest");
        await absent(s3, bucket, "m");
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "m", Body: body, ContentMD5: md5(body) }));
        expect((await refusal(s3.send(new PutObjectCommand({ Bucket: bucket, Key: "m", Body: other, ChecksumSHA256: checksumOf("sha256", body) })))).name).toBe("BadDigest");
        const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "m" }));
        expect(head.ETag).toBe(`"${createHash("md5").update(body).digest("hex")}"`);
        if (versioned) expect((await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: "m" }))).Versions?.length).toBe(1);
      });

      it("keeps no checksum a CopyObject claims (S3 takes none: it computes the copy's)", async () => {
        const { s3, bucket } = await start();
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "source", Body: body }));
        const copy = new CopyObjectCommand({ Bucket: bucket, Key: "copy", CopySource: `${bucket}/source`, MetadataDirective: "REPLACE" });
        copy.middlewareStack.add(
          (next) => async (args) => {
            const request: unknown = args.request;
            if (hasHeaders(request)) request.headers["x-amz-checksum-sha256"] = checksumOf("sha256", other);
            return next(args);
          },
          { step: "build" },
        );
        await s3.send(copy);
        const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "copy", ChecksumMode: "ENABLED" }));
        expect(head.ContentLength).toBe(body.length);
        expect(head.ChecksumSHA256).toBeUndefined();
      });

      it("refuses a PutObject whose checksum does not match whatever else its query string holds", async () => {
        const { s3, bucket } = await start();
        for (const [name, query] of [["extra", { a: "1" }], ["presigned", PRESIGNED]] as const) {
          const wrong = withExtras(new PutObjectCommand({ Bucket: bucket, Key: `lie-${name}`, Body: body, ChecksumSHA256: checksumOf("sha256", other) }), query);
          expect((await refusal(s3.send(wrong))).name).toBe("BadDigest");
          await absent(s3, bucket, `lie-${name}`);
          await s3.send(withExtras(new PutObjectCommand({ Bucket: bucket, Key: `true-${name}`, Body: body, ChecksumSHA256: checksumOf("sha256", body) }), query));
          const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: `true-${name}`, ChecksumMode: "ENABLED" }));
          expect(head.ChecksumSHA256).toBe(checksumOf("sha256", body));
        }
      });

      it("keeps no checksum a CopyObject with an extra query parameter claims", async () => {
        const { s3, bucket } = await start();
        await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "source", Body: body }));
        const copy = new CopyObjectCommand({ Bucket: bucket, Key: "copy", CopySource: `${bucket}/source`, MetadataDirective: "REPLACE" });
        copy.middlewareStack.add(extras({ a: "1" }, { "x-amz-checksum-sha256": checksumOf("sha256", other) }), { step: "build" });
        await s3.send(copy);
        const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "copy", ChecksumMode: "ENABLED" }));
        expect(head.ContentLength).toBe(body.length);
        expect(head.ChecksumSHA256).toBeUndefined();
      });

      it("refuses an UploadPart whose checksum does not match, recording no part", async () => {
        const { s3, bucket } = await start();
        const part = Buffer.alloc(5 * 1024 * 1024, 3);
        const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "big", ChecksumAlgorithm: "SHA256" }));
        const upload = { Bucket: bucket, Key: "big", UploadId, PartNumber: 1, Body: part };
        expect((await refusal(s3.send(new UploadPartCommand({ ...upload, ChecksumSHA256: checksumOf("sha256", other) })))).name).toBe("BadDigest");
        const etag = `"${createHash("md5").update(part).digest("hex")}"`;
        const complete = () =>
          s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: "big", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: etag, ChecksumSHA256: checksumOf("sha256", part) }] } }));
        // The part refused was not kept: the upload has none to complete with.
        expect((await refusal(complete())).name).toBe("InvalidPart");
        await absent(s3, bucket, "big");
        const done = await s3.send(new UploadPartCommand({ ...upload, ChecksumSHA256: checksumOf("sha256", part) }));
        expect(done.ETag).toBe(etag);
        await complete();
        expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "big" }))).ContentLength).toBe(part.length);
      });
    });
  }
}
