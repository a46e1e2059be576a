// A persisted emulator keeps bodies over LARGE_BODY_BYTES in files beside its
// database (SQLite refuses BLOBs over 1,000,000,000 bytes): such an object
// reads back whole, survives a restart, and its file goes when the object is
// replaced by a small one or deleted. Multipart parts wait in files and a
// large object is joined on disk, with the ETag fauxqs (and S3) would give.

import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { LARGE_BODY_BYTES } from "../../lambdas/local/emulator-large-objects.ts";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { tempDir } from "../support/tree.ts";

const dir = tempDir();
let emulator: Emulator | undefined;

afterEach(async () => {
  await emulator?.stop();
  emulator = undefined;
});
afterAll(() => dir.remove());

async function open(): Promise<{ store: S3Store; files: () => string[] }> {
  emulator = await startEmulator({ port: 0, dataDir: dir.path });
  const { bucket } = await ensureTargetResources({ endpoint: emulator.endpoint, region: "us-east-1" });
  const store = new S3Store(makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }), bucket);
  const files = () => {
    try {
      return readdirSync(join(dir.path, "large-objects", bucket));
    } catch {
      return [];
    }
  };
  return { store, files };
}

describe("large bodies on a persisted emulator", () => {
  // One test: each step needs the emulator's folder as the one before left it.
  const body = randomBytes(LARGE_BODY_BYTES + 12_345);

  it("keeps a large body in a file, reads it back whole also after a restart, and drops the file with the body", async () => {
    const first = await open();
    await first.store.put("data/s/Big File ü", body, { "tidemark-kind": "file" });
    expect(first.files()).toHaveLength(1);
    expect((await first.store.get("data/s/Big File ü"))?.body.equals(body)).toBe(true);
    await first.store.copy("data/s/Big File ü", "data/s/copy", { "tidemark-kind": "copy" });
    expect(first.files()).toHaveLength(2);
    await emulator?.stop();

    const second = await open();
    const object = await second.store.get("data/s/Big File ü");
    expect(object?.body.equals(body)).toBe(true);
    expect(object?.meta).toMatchObject({ "tidemark-kind": "file" });
    expect((await second.store.head("data/s/copy"))?.size).toBe(body.length);

    // A small body replacing the object, and a deletion, take the files along.
    const { store, files } = second;
    await store.put("data/s/Big File ü", Buffer.from("small now"));
    expect((await store.get("data/s/Big File ü"))?.body.toString()).toBe("small now");
    expect(files()).toHaveLength(1);
    await store.delete("data/s/copy");
    expect(files()).toEqual([]);
    expect(await store.get("data/s/copy")).toBeUndefined();
  });
});


async function etagOf(store: S3Store, key: string): Promise<string | undefined> {
  for await (const info of store.list(key)) if (info.key === key) return info.etag;
  return undefined;
}

describe("multipart uploads on a persisted emulator", () => {
  it("joins a large object on disk with the ETag of fauxqs's own join, and a small one in the database", async () => {
    const body = randomBytes(LARGE_BODY_BYTES + 3 * 1024 * 1024 + 11);
    const memory = await startTestEmulator();
    try {
      const reference = new S3Store(makeS3Client({ region: "us-east-1", endpoint: memory.endpoint }), memory.newBucket());
      await reference.put("k", body);
      const { store, files } = await open();
      await store.put("k", body);
      await store.put("small", body.subarray(0, 12 * 1024 * 1024));
      expect(await etagOf(store, "k")).toBe(await etagOf(reference, "k"));
      expect((await store.get("k"))?.body.equals(body)).toBe(true);
      expect((await store.get("small"))?.body.equals(body.subarray(0, 12 * 1024 * 1024))).toBe(true);
      expect(files()).toHaveLength(1);
      expect(readdirSync(join(dir.path, "large-objects", "_uploads"))).toEqual([]);
    } finally {
      await memory.server.stop();
    }
  });

  it("appends a part that arrived ahead of the one before to the running file once that one is in: completing is still a rename", async () => {
    const { store, files } = await open();
    const s3 = store.client;
    // Parts of 8 MiB (the emulator takes about 11 MiB a request), enough of them for a body kept in a file.
    const size = 8 * 1024 * 1024;
    const count = Math.ceil((LARGE_BODY_BYTES + 1) / size);
    const body = randomBytes(count * size);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: store.bucket, Key: "k" }));
    const folder = join(dir.path, "large-objects", "_uploads", UploadId ?? "");
    const numbers = Array.from({ length: count }, (_, i) => i + 1);
    const bytesOf = (number: number) => body.subarray((number - 1) * size, number * size);
    const etags = new Map<number, string | undefined>();
    const upload = async (number: number) => {
      etags.set(number, (await s3.send(new UploadPartCommand({ Bucket: store.bucket, Key: "k", UploadId, PartNumber: number, Body: bytesOf(number) }))).ETag);
    };
    await upload(2);
    expect(readdirSync(folder)).toEqual(["2"]);
    await upload(1);
    expect(readdirSync(folder)).toEqual(["running"]);
    for (const number of numbers.slice(2)) await upload(number);
    expect(readdirSync(folder)).toEqual(["running"]);
    const parts = numbers.map((number) => ({ PartNumber: number, ETag: etags.get(number) }));
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: store.bucket, Key: "k", UploadId, MultipartUpload: { Parts: parts } }));
    expect((await store.get("k"))?.body.equals(body)).toBe(true);
    expect(files()).toHaveLength(1);
    // S3's ETag of an object in parts: the MD5 of the parts' MD5s, and their count.
    const md5s = Buffer.concat(numbers.map((number) => createHash("md5").update(bytesOf(number)).digest()));
    expect(await etagOf(store, "k")).toBe(`"${createHash("md5").update(md5s).digest("hex")}-${count}"`);
  });

  it("answers InvalidPart for a part list that does not match, and removes the parts when the upload is aborted", async () => {
    const { store } = await open();
    const s3 = store.client;
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: store.bucket, Key: "bad" }));
    const part = await s3.send(new UploadPartCommand({ Bucket: store.bucket, Key: "bad", UploadId, PartNumber: 1, Body: randomBytes(1024) }));
    // Part 1, in order: appended to the upload's running file.
    expect(readdirSync(join(dir.path, "large-objects", "_uploads", UploadId ?? ""))).toEqual(["running"]);
    await expect(
      s3.send(new CompleteMultipartUploadCommand({ Bucket: store.bucket, Key: "bad", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: '"0000"' }] } })),
    ).rejects.toMatchObject({ name: "InvalidPart" });
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: store.bucket, Key: "bad", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }));
    expect((await store.head("bad"))?.size).toBe(1024);
    expect(existsSync(join(dir.path, "large-objects", "_uploads", UploadId ?? ""))).toBe(false);

    const aborted = await s3.send(new CreateMultipartUploadCommand({ Bucket: store.bucket, Key: "gone" }));
    await s3.send(new UploadPartCommand({ Bucket: store.bucket, Key: "gone", UploadId: aborted.UploadId, PartNumber: 1, Body: randomBytes(10) }));
    expect(existsSync(join(dir.path, "large-objects", "_uploads", aborted.UploadId ?? ""))).toBe(true);
    await s3.send(new AbortMultipartUploadCommand({ Bucket: store.bucket, Key: "gone", UploadId: aborted.UploadId }));
    expect(existsSync(join(dir.path, "large-objects", "_uploads", aborted.UploadId ?? ""))).toBe(false);
  });
});
