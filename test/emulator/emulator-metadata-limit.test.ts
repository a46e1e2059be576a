// The local cloud refuses writes whose user metadata passes S3's 2 KB limit
// (the UTF-8 bytes of every x-amz-meta- name and value) with S3's
// MetadataTooLarge, versioned or not, and writes nothing: a write that would
// fail on AWS fails in tests too.

import { CopyObjectCommand, CreateBucketCommand, CreateMultipartUploadCommand, HeadObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { USER_METADATA_LIMIT_BYTES } from "../../contract/link-meta.ts";
import { startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";

/** Metadata of exactly `bytes` bytes as S3 counts them: two names of 4 bytes, their values the rest (ASCII, as tidemark's). */
function metadataOf(bytes: number): Record<string, string> {
  return { note: "1", long: "x".repeat(bytes - 4 - 1 - 4) };
}

async function refusal(write: Promise<unknown>): Promise<{ name: string; status: number | undefined }> {
  try {
    await write;
  } catch (error) {
    if (error instanceof S3ServiceException) return { name: error.name, status: error.$metadata.httpStatusCode };
    throw error;
  }
  throw new Error("the write was not refused");
}

describe.each([false, true])("user metadata over S3's limit (versioned: %s)", (versioned) => {
  let emulator: Emulator;
  let s3: S3Client;
  const bucket = "limits";
  beforeAll(async () => {
    emulator = await startEmulator({ port: 0, versioned });
    s3 = new S3Client({ region: "us-east-1", endpoint: emulator.endpoint, forcePathStyle: true, credentials: { accessKeyId: "test", secretAccessKey: "test" } });
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  });
  afterAll(async () => {
    s3.destroy();
    await emulator.stop();
  });

  const exists = async (key: string) =>
    s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key })).then(
      () => true,
      () => false,
    );

  it("takes a PutObject at the limit and refuses one a byte over, writing nothing", async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "fits", Body: "a", Metadata: metadataOf(USER_METADATA_LIMIT_BYTES) }));
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "fits" }))).Metadata).toEqual(metadataOf(USER_METADATA_LIMIT_BYTES));
    const put = s3.send(new PutObjectCommand({ Bucket: bucket, Key: "over", Body: "a", Metadata: metadataOf(USER_METADATA_LIMIT_BYTES + 1) }));
    expect(await refusal(put)).toEqual({ name: "MetadataTooLarge", status: 400 });
    expect(await exists("over")).toBe(false);
  });

  it("refuses a CopyObject that replaces the metadata with too much, and copies one that keeps the source's", async () => {
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "source", Body: "b", Metadata: { a: "1" } }));
    const replace = s3.send(
      new CopyObjectCommand({ Bucket: bucket, Key: "replaced", CopySource: `${bucket}/source`, MetadataDirective: "REPLACE", Metadata: metadataOf(USER_METADATA_LIMIT_BYTES + 1) }),
    );
    expect(await refusal(replace)).toEqual({ name: "MetadataTooLarge", status: 400 });
    expect(await exists("replaced")).toBe(false);
    await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "kept", CopySource: `${bucket}/source` }));
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "kept" }))).Metadata).toEqual({ a: "1" });
  });

  it("refuses a CreateMultipartUpload with too much metadata", async () => {
    const create = s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "parts", Metadata: metadataOf(USER_METADATA_LIMIT_BYTES + 1) }));
    expect(await refusal(create)).toEqual({ name: "MetadataTooLarge", status: 400 });
  });

  it("fails the applier's store write with it, as on AWS", async () => {
    const store = new S3Store(s3, bucket);
    await expect(store.put("store-over", Buffer.from("c"), metadataOf(USER_METADATA_LIMIT_BYTES + 1))).rejects.toThrow(/metadata/i);
    expect(await exists("store-over")).toBe(false);
  });
});
