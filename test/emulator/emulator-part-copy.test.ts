// UploadPartCopy on the local cloud's emulator answers as S3 does: the copied
// part's checksum in the algorithm the upload was created with (none when it
// names none), for a source in memory and one kept in a file, whole or by
// range; the part keeps it, so the object's composite checksum covers it. The
// applier's streamed upload (putInParts) then copies unchanged parts
// server-side, and still refuses a copy whose checksum is not that of the
// bytes it read.

import { createHash, randomBytes } from "node:crypto";
import {
  ChecksumAlgorithm,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCopyCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { ensureTargetResources, startEmulator, type Emulator, type EmulatorOptions } from "../../lambdas/local/emulator.ts";
import { CopiedPartMismatchError, putInParts } from "../../lambdas/s3-multipart.ts";

const MiB = 1024 * 1024;

let emulator: Emulator | undefined;
let client: S3Client | undefined;

afterEach(async () => {
  client?.destroy();
  client = undefined;
  await emulator?.stop();
  emulator = undefined;
});

/** The emulator with the S3 commands its client sends counted. */
async function open(options: EmulatorOptions = {}): Promise<{ s3: S3Client; bucket: string; commands: string[] }> {
  emulator = await startEmulator({ port: 0, ...options });
  const { bucket } = await ensureTargetResources({ endpoint: emulator.endpoint, region: "us-east-1" });
  const s3 = (client = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }));
  const commands: string[] = [];
  s3.middlewareStack.add(
    (next, context) => async (args) => {
      commands.push(context.commandName ?? "");
      return next(args);
    },
    { step: "initialize", name: "countCommands" },
  );
  return { s3, bucket, commands };
}

const digest = (algorithm: string, bytes: Uint8Array) => createHash(algorithm).update(bytes).digest("base64");
const count = (commands: readonly string[], name: string) => commands.filter((c) => c === name).length;

async function bytesOf(s3: S3Client, bucket: string, key: string): Promise<Buffer> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  return Buffer.from((await out.Body?.transformToByteArray()) ?? new Uint8Array());
}

/** Copies bytes [0, split) of src as part 1 and the rest as part 2 of a new upload to dest: both answers and the object's SHA-256 checksum. */
async function copyInTwo(s3: S3Client, bucket: string, source: Buffer, split: number, algorithm?: ChecksumAlgorithm) {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "dest", ...(algorithm ? { ChecksumAlgorithm: algorithm } : {}) }));
  const copy = (PartNumber: number, range: string) => s3.send(new UploadPartCopyCommand({ Bucket: bucket, Key: "dest", UploadId, PartNumber, CopySource: `${bucket}/src`, CopySourceRange: range }));
  const first = await copy(1, `bytes=0-${split - 1}`);
  const second = await copy(2, `bytes=${split}-${source.length - 1}`);
  const parts = [first, second].map((out, i) => ({ PartNumber: i + 1, ETag: out.CopyPartResult?.ETag, ChecksumSHA256: out.CopyPartResult?.ChecksumSHA256 }));
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: "dest", UploadId, MultipartUpload: { Parts: parts } }));
  const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "dest", ChecksumMode: "ENABLED" }));
  return { first: first.CopyPartResult, second: second.CopyPartResult, objectChecksum: head.ChecksumSHA256 };
}

describe("UploadPartCopy names the copied part's checksum as S3 does", () => {
  for (const where of [
    { name: "a source in memory", options: {} },
    { name: "a source kept in a file", options: { largeBodyBytes: MiB } },
  ]) {
    it(`reports the SHA-256 of each copied range of ${where.name}, and the object's composite checksum covers the copied parts`, async () => {
      const { s3, bucket } = await open(where.options);
      const source = randomBytes(7 * MiB + 13);
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "src", Body: source }));
      const split = 5 * MiB;

      const copied = await copyInTwo(s3, bucket, source, split, ChecksumAlgorithm.SHA256);

      expect(copied.first?.ChecksumSHA256).toBe(digest("sha256", source.subarray(0, split)));
      expect(copied.second?.ChecksumSHA256).toBe(digest("sha256", source.subarray(split)));
      expect(copied.first?.ETag).toBe(`"${createHash("md5").update(source.subarray(0, split)).digest("hex")}"`);
      // S3's composite checksum: the SHA-256 of the parts' SHA-256s, and their count.
      const parts = Buffer.concat([createHash("sha256").update(source.subarray(0, split)).digest(), createHash("sha256").update(source.subarray(split)).digest()]);
      expect(copied.objectChecksum).toBe(`${digest("sha256", parts)}-2`);
      expect((await bytesOf(s3, bucket, "dest")).equals(source)).toBe(true);
    });
  }

  it("reports the checksum of a whole-source copy, in the upload's algorithm (SHA-1 here), and none when the upload names no algorithm", async () => {
    const { s3, bucket } = await open({ largeBodyBytes: MiB });
    const source = randomBytes(2 * MiB + 1);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "src", Body: source }));
    const copyWhole = async (algorithm?: ChecksumAlgorithm) => {
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "dest", ...(algorithm ? { ChecksumAlgorithm: algorithm } : {}) }));
      return (await s3.send(new UploadPartCopyCommand({ Bucket: bucket, Key: "dest", UploadId, PartNumber: 1, CopySource: `${bucket}/src` }))).CopyPartResult;
    };

    const sha1 = await copyWhole(ChecksumAlgorithm.SHA1);
    expect(sha1?.ChecksumSHA1).toBe(digest("sha1", source));
    expect(sha1?.ChecksumSHA256).toBeUndefined();
    const none = await copyWhole();
    expect(none?.ChecksumSHA256).toBeUndefined();
    expect(none?.ChecksumSHA1).toBeUndefined();
    expect(none?.ETag).toBe(`"${createHash("md5").update(source).digest("hex")}"`);
  });

  it("refuses a byte range of a source of 5 MiB or less, in memory or in a file, as S3 does", async () => {
    const { s3, bucket } = await open({ largeBodyBytes: MiB });
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "dest", ChecksumAlgorithm: "SHA256" }));
    for (const [key, size] of [
      ["small", 1000],
      ["filed", 5 * MiB],
    ] as const) {
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: randomBytes(size) }));
      await expect(
        s3.send(new UploadPartCopyCommand({ Bucket: bucket, Key: "dest", UploadId, PartNumber: 1, CopySource: `${bucket}/${key}`, CopySourceRange: "bytes=0-99" })),
      ).rejects.toMatchObject({ name: "InvalidRequest" });
    }
  });
});

describe("the applier's streamed upload on the emulator", () => {
  const base = randomBytes(40 * MiB);
  const next = Buffer.from(base);
  // A page written in the third of five 8 MiB parts.
  randomBytes(4096).copy(next, 17 * MiB);
  const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
  const read = (bytes: Buffer) => (offset: number, length: number) => Promise.resolve(bytes.subarray(offset, offset + length));

  for (const where of [
    { name: "in memory", options: {} },
    { name: "in a file", options: { largeBodyBytes: MiB } },
    { name: "in a file, on a versioned bucket as `tidemark local` runs it", options: { largeBodyBytes: MiB, versioned: true } },
  ]) {
    it(`copies the parts no change touches from the old object (${where.name}) server-side and uploads only the changed one`, async () => {
      const { s3, bucket, commands } = await open(where.options);
      await putInParts(s3, { bucket, key: "f", size: base.length, metadata: {}, read: read(base) });
      commands.length = 0;
      let whole: string | undefined;

      await putInParts(s3, {
        bucket,
        key: "f",
        size: next.length,
        metadata: {},
        read: read(next),
        beforeComplete: (sha) => (whole = sha),
        copy: { copySource: `${bucket}/f`, untouched: (offset, length) => offset + length <= 16 * MiB || offset >= 24 * MiB },
      });

      expect(count(commands, "UploadPartCopyCommand")).toBe(4);
      expect(count(commands, "UploadPartCommand")).toBe(1);
      expect(whole).toBe(sha256(next));
      expect(sha256(await bytesOf(s3, bucket, "f"))).toBe(sha256(next));
    });
  }

  it("refuses to complete when a copied part's checksum is not that of the bytes read for it, and the old object stays", async () => {
    const { s3, bucket } = await open({ largeBodyBytes: MiB });
    await putInParts(s3, { bucket, key: "f", size: base.length, metadata: {}, read: read(base) });

    // The part holding the change is called untouched: the emulator copies the old bytes, whose SHA-256 is not the new ones'.
    const upload = putInParts(s3, { bucket, key: "f", size: next.length, metadata: {}, read: read(next), copy: { copySource: `${bucket}/f`, untouched: () => true } });

    await expect(upload).rejects.toThrow(CopiedPartMismatchError);
    expect(sha256(await bytesOf(s3, bucket, "f"))).toBe(sha256(base));
  });
});
