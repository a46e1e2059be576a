// The local emulator completes a multipart upload created with a checksum
// algorithm as S3 does: not while a part named lacks its checksum (fauxqs
// built the composite over the other parts: a wrong -N, and part checksums
// shifted against their part numbers), and with the composite in the
// upload's algorithm, on fauxqs's path and on the join on disk alike.

import { createHash, randomBytes } from "node:crypto";
import { crc32 } from "node:zlib";
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, HeadObjectCommand, UploadPartCommand, type ChecksumAlgorithm } from "@aws-sdk/client-s3";
import { afterAll, afterEach, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { tempDir } from "../support/tree.ts";

const dir = tempDir();
let emulator: Emulator | undefined;

afterEach(async () => {
  await emulator?.stop();
  emulator = undefined;
});
afterAll(() => dir.remove());

const digest: Record<"SHA1" | "SHA256" | "CRC32", (bytes: Buffer) => Buffer> = {
  SHA1: (bytes) => createHash("sha1").update(bytes).digest(),
  SHA256: (bytes) => createHash("sha256").update(bytes).digest(),
  CRC32: (bytes) => {
    const value = Buffer.alloc(4);
    value.writeUInt32BE(crc32(bytes));
    return value;
  },
};

// Two parts of 5 MiB + 1 KiB: over a 1 MiB threshold the emulator joins them on disk; under the default, fauxqs does.
for (const [path, largeBodyBytes] of [["joined on disk", 1024 * 1024], ["joined by fauxqs", undefined]] as const) {
  for (const algorithm of ["SHA1", "SHA256", "CRC32"] as const) {
    it(`refuses to complete a ${algorithm} upload with a part lacking its checksum, then builds the composite in ${algorithm} (${path})`, async () => {
      emulator = await startEmulator({ port: 0, dataDir: dir.path, ...(largeBodyBytes ? { largeBodyBytes } : {}) });
      const { bucket } = await ensureTargetResources({ endpoint: emulator.endpoint, region: "us-east-1" });
      const s3 = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint });
      const Key = `${algorithm}-${largeBodyBytes ?? "default"}`;
      const bodies = [randomBytes(5 * 1024 * 1024), randomBytes(1024)];
      const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key, ChecksumAlgorithm: algorithm }));
      const upload = async (number: number, checksum?: ChecksumAlgorithm) =>
        (await s3.send(new UploadPartCommand({ Bucket: bucket, Key, UploadId, PartNumber: number, Body: bodies[number - 1], ...(checksum ? { ChecksumAlgorithm: checksum } : {}) }))).ETag;
      const first = await upload(1, algorithm);
      const unchecked = await upload(2);
      const complete = (second: string | undefined) =>
        s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key, UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: first }, { PartNumber: 2, ETag: second }] } }));
      await expect(complete(unchecked)).rejects.toMatchObject({ name: "InvalidRequest", message: expect.stringMatching(/missing for part 2/) });

      await complete(await upload(2, algorithm));
      const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key, ChecksumMode: "ENABLED" }));
      const composite = `${digest[algorithm](Buffer.concat(bodies.map((body) => digest[algorithm](body)))).toString("base64")}-2`;
      expect({ SHA1: head.ChecksumSHA1, SHA256: head.ChecksumSHA256, CRC32: head.ChecksumCRC32 }[algorithm]).toBe(composite);
      expect(head.ContentLength).toBe(5 * 1024 * 1024 + 1024);
    });
  }
}
