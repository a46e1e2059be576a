// The local cloud's versioned buckets (startEmulator({ versioned: true })),
// through the AWS SDK's S3 client as the agent and the applier use it:
// version ids on writes, older versions readable by id, delete markers,
// ListObjectVersions in S3's order and pages, copies of a named version, large
// old versions kept in files, and all of it across a restart. The default
// emulator stays unversioned.

import { createHash } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type ListObjectVersionsCommandOutput,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LARGE_BODY_BYTES } from "../../lambdas/local/emulator-large-objects.ts";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { DirectS3Store } from "../../lambdas/store/direct-s3-store.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { targetStoreContract } from "../support/store-contract.ts";
import { tempDir } from "../support/tree.ts";

function s3Client(endpoint: string): S3Client {
  return new S3Client({
    region: "us-east-1",
    endpoint,
    forcePathStyle: true,
    requestChecksumCalculation: "WHEN_REQUIRED",
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
}

let bucketCount = 0;
async function newBucket(s3: S3Client): Promise<string> {
  const bucket = `versions-${process.pid}-${bucketCount++}`;
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

async function text(s3: S3Client, bucket: string, key: string, versionId?: string): Promise<{ body: string; versionId: string | undefined }> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(versionId ? { VersionId: versionId } : {}) }));
  return { body: (await out.Body?.transformToString()) ?? "", versionId: out.VersionId };
}

async function put(s3: S3Client, bucket: string, key: string, body: string, metadata: Record<string, string> = {}): Promise<string> {
  const out = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, Metadata: metadata }));
  if (!out.VersionId) throw new Error(`PutObject of ${key} answered no version id`);
  return out.VersionId;
}

/** The S3 error a request failed with: its name, status and headers. */
async function failure(request: Promise<unknown>): Promise<{ name: string; status: number | undefined; headers: Record<string, string> }> {
  try {
    await request;
  } catch (error) {
    if (error instanceof S3ServiceException) return { name: error.name, status: error.$metadata.httpStatusCode, headers: error.$response?.headers ?? {} };
    throw error;
  }
  throw new Error("the request succeeded");
}

interface Listed {
  key: string;
  versionId: string;
  marker: boolean;
  latest: boolean;
}

/** A page's versions and delete markers in S3's order: the SDK splits them into two lists, each in order. */
function pageEntries(page: ListObjectVersionsCommandOutput, expected: Listed[]): Listed[] {
  const versions = (page.Versions ?? []).map((v) => ({ key: v.Key ?? "", versionId: v.VersionId ?? "", marker: false, latest: v.IsLatest === true }));
  const markers = (page.DeleteMarkers ?? []).map((m) => ({ key: m.Key ?? "", versionId: m.VersionId ?? "", marker: true, latest: m.IsLatest === true }));
  // Interleave as the expected page does; each list must itself be in that order.
  const out: Listed[] = [];
  for (const entry of expected) {
    const next = entry.marker ? markers.shift() : versions.shift();
    if (next) out.push(next);
  }
  return [...out, ...versions, ...markers];
}

async function listAll(s3: S3Client, bucket: string, maxKeys: number | undefined, expected: Listed[]): Promise<{ entries: Listed[]; pages: number }> {
  const entries: Listed[] = [];
  let pages = 0;
  let keyMarker: string | undefined;
  let versionIdMarker: string | undefined;
  for (;;) {
    const page = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, MaxKeys: maxKeys, KeyMarker: keyMarker, VersionIdMarker: versionIdMarker }));
    pages++;
    const count = (page.Versions?.length ?? 0) + (page.DeleteMarkers?.length ?? 0);
    const slice = expected.slice(entries.length, entries.length + count);
    entries.push(...pageEntries(page, slice));
    if (!page.IsTruncated) return { entries, pages };
    // The next page goes on after the last entry of this one.
    expect({ key: page.NextKeyMarker, versionId: page.NextVersionIdMarker }).toEqual({ key: entries.at(-1)?.key, versionId: entries.at(-1)?.versionId });
    keyMarker = page.NextKeyMarker;
    versionIdMarker = page.NextVersionIdMarker;
    if (pages > 10_000) throw new Error("the listing does not end");
  }
}

/** Keys in S3's order (UTF-8 bytes), computed apart from the code under test. */
const byteOrder = (keys: string[]) => [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

/** What ListObjectVersions must answer for `history` (each key's versions, oldest first). */
function expectedListing(history: Map<string, { versionId: string; marker: boolean }[]>): Listed[] {
  return byteOrder([...history.keys()]).flatMap((key) =>
    [...(history.get(key) ?? [])].reverse().map((v, i) => ({ key, versionId: v.versionId, marker: v.marker, latest: i === 0 })),
  );
}

describe("a versioned local cloud", () => {
  let emulator: Emulator;
  let s3: S3Client;
  beforeAll(async () => {
    emulator = await startEmulator({ port: 0, versioned: true });
    s3 = s3Client(emulator.endpoint);
  });
  afterAll(async () => {
    s3.destroy();
    await emulator.stop();
  });

  it("answers GetBucketVersioning Enabled, where the default emulator keeps no versions", async () => {
    const bucket = await newBucket(s3);
    expect((await s3.send(new GetBucketVersioningCommand({ Bucket: bucket }))).Status).toBe("Enabled");
    expect(await new S3Store(s3, bucket).versioned()).toBe(true);

    const plain = await startEmulator({ port: 0 });
    const plainS3 = s3Client(plain.endpoint);
    try {
      const other = await newBucket(plainS3);
      expect((await plainS3.send(new GetBucketVersioningCommand({ Bucket: other }))).Status).toBeUndefined();
      expect(await new S3Store(plainS3, other).versioned()).toBe(false);
      await plainS3.send(new PutObjectCommand({ Bucket: other, Key: "k", Body: "one" }));
      const second = await plainS3.send(new PutObjectCommand({ Bucket: other, Key: "k", Body: "two" }));
      expect(second.VersionId).toBeUndefined();
    } finally {
      plainS3.destroy();
      await plain.stop();
    }
  });

  it("gives PutObject, CopyObject and CompleteMultipartUpload new version ids, and keeps replaced objects readable by them", async () => {
    const bucket = await newBucket(s3);
    const first = await put(s3, bucket, "docs/a.txt", "one", { origin: "first" });
    const second = await put(s3, bucket, "docs/a.txt", "two!", { origin: "second" });
    expect(first).not.toBe(second);
    expect(first).toMatch(/^[A-Za-z0-9._-]{20,}$/);

    expect(await text(s3, bucket, "docs/a.txt")).toEqual({ body: "two!", versionId: second });
    expect(await text(s3, bucket, "docs/a.txt", first)).toEqual({ body: "one", versionId: first });
    expect(await text(s3, bucket, "docs/a.txt", second)).toEqual({ body: "two!", versionId: second });
    const head = await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "docs/a.txt", VersionId: first }));
    expect({ size: head.ContentLength, versionId: head.VersionId, metadata: head.Metadata }).toEqual({ size: 3, versionId: first, metadata: { origin: "first" } });
    const ranged = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "docs/a.txt", VersionId: first, Range: "bytes=1-2" }));
    expect(await ranged.Body?.transformToString()).toBe("ne");
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "docs/a.txt" }))).VersionId).toBe(second);
    expect(await failure(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "docs/a.txt", VersionId: "no-such-version" })))).toMatchObject({ name: "NoSuchVersion", status: 404 });

    // A copy of the current object, and of a named older one.
    const copied = await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "docs/copy.txt", CopySource: `${bucket}/docs/a.txt` }));
    expect(copied.CopySourceVersionId).toBe(second);
    expect(await text(s3, bucket, "docs/copy.txt")).toEqual({ body: "two!", versionId: copied.VersionId });
    const restored = await s3.send(
      new CopyObjectCommand({ Bucket: bucket, Key: "docs/a.txt", CopySource: `${bucket}/docs/a.txt?versionId=${first}`, MetadataDirective: "REPLACE", Metadata: { origin: "restored" } }),
    );
    expect(restored.CopySourceVersionId).toBe(first);
    expect(restored.VersionId).toBeDefined();
    expect([first, second]).not.toContain(restored.VersionId);
    expect(await text(s3, bucket, "docs/a.txt")).toEqual({ body: "one", versionId: restored.VersionId });
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "docs/a.txt" }))).Metadata).toEqual({ origin: "restored" });
    expect(await text(s3, bucket, "docs/a.txt", second)).toEqual({ body: "two!", versionId: second });
    const staleMatch = s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "docs/b.txt", CopySource: `${bucket}/docs/a.txt?versionId=${first}`, CopySourceIfMatch: '"0000"' }));
    expect(await failure(staleMatch)).toMatchObject({ name: "PreconditionFailed", status: 412 });
    const staleCurrent = s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "docs/b.txt", CopySource: `${bucket}/docs/a.txt`, CopySourceIfMatch: '"0000"' }));
    expect(await failure(staleCurrent)).toMatchObject({ name: "PreconditionFailed", status: 412 });
    expect(await failure(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "docs/b.txt" })))).toMatchObject({ status: 404 });

    // An upload in parts replaces the object like a put.
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "docs/a.txt" }));
    const part = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: "docs/a.txt", UploadId, PartNumber: 1, Body: "three" }));
    const completed = await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: "docs/a.txt", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] } }));
    expect(completed.VersionId).toBeDefined();
    expect(await text(s3, bucket, "docs/a.txt")).toEqual({ body: "three", versionId: completed.VersionId });
    expect(await text(s3, bucket, "docs/a.txt", restored.VersionId)).toEqual({ body: "one", versionId: restored.VersionId });
  });

  it("deletes with a delete marker that GET and HEAD name, and with a version id removes only that version", async () => {
    const bucket = await newBucket(s3);
    const first = await put(s3, bucket, "k", "one");
    const second = await put(s3, bucket, "k", "two");
    const deleted = await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "k" }));
    expect(deleted.DeleteMarker).toBe(true);
    const marker = deleted.VersionId ?? "";
    expect([first, second, ""]).not.toContain(marker);

    const get = await failure(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "k" })));
    expect(get).toMatchObject({ name: "NoSuchKey", status: 404, headers: { "x-amz-delete-marker": "true", "x-amz-version-id": marker } });
    expect(await failure(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "k" })))).toMatchObject({ status: 404, headers: { "x-amz-delete-marker": "true" } });
    expect(await failure(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "k", VersionId: marker })))).toMatchObject({ status: 405, headers: { "x-amz-delete-marker": "true" } });
    expect((await s3.send(new ListObjectsV2Command({ Bucket: bucket }))).Contents ?? []).toEqual([]);
    expect(await text(s3, bucket, "k", second)).toEqual({ body: "two", versionId: second });
    expect(await new S3Store(s3, bucket).get("k")).toBeUndefined();

    // Removing a noncurrent version, then the marker: the newest version left is current again.
    expect((await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "k", VersionId: first }))).VersionId).toBe(first);
    expect(await failure(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "k", VersionId: first })))).toMatchObject({ name: "NoSuchVersion" });
    const unmarked = await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "k", VersionId: marker }));
    expect({ marker: unmarked.DeleteMarker, versionId: unmarked.VersionId }).toEqual({ marker: true, versionId: marker });
    expect(await text(s3, bucket, "k")).toEqual({ body: "two", versionId: second });

    // Removing the current version leaves no object and no versions.
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "k", VersionId: second }));
    const gone = await failure(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "k" })));
    expect(gone).toMatchObject({ name: "NoSuchKey" });
    expect(gone.headers).not.toHaveProperty("x-amz-delete-marker");
    const listing = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
    expect([...(listing.Versions ?? []), ...(listing.DeleteMarkers ?? [])]).toEqual([]);
  });

  it("lists versions and delete markers by key in byte order, newest first, in pages that go on after the markers", async () => {
    const bucket = await newBucket(s3);
    const history = new Map<string, { versionId: string; marker: boolean }[]>();
    const keys = ["a", "A", "B", "é", "😀", "\ue000", "a/b", "a/c", "ab"];
    for (const [i, key] of keys.entries()) {
      const versions: { versionId: string; marker: boolean }[] = [];
      for (let n = 0; n <= i % 3; n++) versions.push({ versionId: await put(s3, bucket, key, `${key} ${n}`), marker: false });
      if (i % 2 === 0) versions.push({ versionId: (await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }))).VersionId ?? "", marker: true });
      history.set(key, versions);
    }
    const expected = expectedListing(history);
    expect(expected.length).toBeGreaterThan(20);
    expect(await listAll(s3, bucket, undefined, expected)).toEqual({ entries: expected, pages: 1 });
    for (const size of [1, 3, 7]) {
      const { entries, pages } = await listAll(s3, bucket, size, expected);
      expect(entries).toEqual(expected);
      expect(pages).toBe(Math.ceil(expected.length / size));
    }

    const rolled = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Delimiter: "/", Prefix: "" }));
    expect(rolled.CommonPrefixes?.map((p) => p.Prefix)).toEqual(["a/"]);
    expect(rolled.Versions?.some((v) => v.Key?.startsWith("a/"))).toBe(false);
    const prefixed = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: "a/" }));
    expect([...(prefixed.Versions ?? []), ...(prefixed.DeleteMarkers ?? [])].map((v) => v.Key).sort()).toEqual(expected.filter((e) => e.key.startsWith("a/")).map((e) => e.key).sort());
  });

  it("refuses what it does not emulate, and a bucket with versions left, with S3's errors", async () => {
    const bucket = await newBucket(s3);
    await s3.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: "Enabled" } }));
    expect(await failure(s3.send(new PutBucketVersioningCommand({ Bucket: bucket, VersioningConfiguration: { Status: "Suspended" } })))).toMatchObject({ name: "NotImplemented", status: 501 });
    expect((await s3.send(new GetBucketVersioningCommand({ Bucket: bucket }))).Status).toBe("Enabled");
    expect(await failure(s3.send(new GetBucketVersioningCommand({ Bucket: "no-such-bucket" })))).toMatchObject({ name: "NoSuchBucket", status: 404 });
    const version = await put(s3, bucket, "k", "one");
    const named = s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: "k", VersionId: version }] } }));
    expect(await failure(named)).toMatchObject({ name: "NotImplemented", status: 501 });
    expect(await text(s3, bucket, "k")).toEqual({ body: "one", versionId: version });
    expect(await failure(s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "c", CopySource: `${bucket}/%E0%A4%A` })))).toMatchObject({ name: "InvalidArgument", status: 400 });

    // Deleting the object leaves its version and a marker: the bucket is not empty until both go.
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "k" }));
    expect(await failure(s3.send(new DeleteBucketCommand({ Bucket: bucket })))).toMatchObject({ name: "BucketNotEmpty", status: 409 });
    const listing = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
    for (const v of [...(listing.Versions ?? []), ...(listing.DeleteMarkers ?? [])]) await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: v.Key, VersionId: v.VersionId }));
    await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
    expect(await failure(s3.send(new HeadBucketCommand({ Bucket: bucket })))).toMatchObject({ status: 404 });
  });

  it("pages ListObjectVersions past 1,000 versions, each version once", async () => {
    const bucket = await newBucket(s3);
    const history = new Map<string, { versionId: string; marker: boolean }[]>();
    // Each key's versions one after another (their order is the listing's), the keys side by side.
    await Promise.all(
      ["many/Z", "many/a", "many/é"].map(async (key) => {
        const versions: { versionId: string; marker: boolean }[] = [];
        history.set(key, versions);
        for (let n = 0; n < 335; n++) versions.push({ versionId: await put(s3, bucket, key, String(n)), marker: false });
      }),
    );
    const expected = expectedListing(history);
    expect(expected).toHaveLength(1_005);
    const { entries, pages } = await listAll(s3, bucket, undefined, expected);
    expect(pages).toBe(2);
    expect(entries).toEqual(expected);
    expect(new Set(entries.map((e) => e.versionId)).size).toBe(1_005);
  }, 180_000);
});

targetStoreContract("S3 on the versioned emulator", async () => new S3Store(versionedS3(), await newBucket(versionedS3())));
targetStoreContract("S3 on the versioned emulator, direct requests", async () => new DirectS3Store(versionedS3(), await newBucket(versionedS3())));

let shared: { emulator: Emulator; s3: S3Client } | undefined;
function versionedS3(): S3Client {
  if (!shared) throw new Error("the versioned emulator is not started");
  return shared.s3;
}
beforeAll(async () => {
  const emulator = await startEmulator({ port: 0, versioned: true });
  shared = { emulator, s3: s3Client(emulator.endpoint) };
});
afterAll(async () => {
  shared?.s3.destroy();
  await shared?.emulator.stop();
});

describe("S3Store on a versioned emulator", () => {
  it("is versioned, heads name the current version, and get(key, versionId) reads a replaced or deleted one", async () => {
    const store = new S3Store(versionedS3(), await newBucket(versionedS3()));
    expect(await store.versioned()).toBe(true);
    await store.put("data/s/f", Buffer.from("first"), { "tidemark-mode": "644" });
    const first = (await store.head("data/s/f"))?.versionId;
    await store.put("data/s/f", Buffer.from("second"));
    const second = (await store.head("data/s/f"))?.versionId;
    expect(first).toBeDefined();
    expect(second).toBeDefined();
    expect(first).not.toBe(second);
    expect((await store.get("data/s/f", first))?.body.toString()).toBe("first");
    expect((await store.get("data/s/f", first))?.meta).toEqual({ "tidemark-mode": "644" });
    await store.delete("data/s/f");
    expect(await store.get("data/s/f")).toBeUndefined();
    expect((await store.get("data/s/f", second))?.body.toString()).toBe("second");
    expect(await store.hash?.("data/s/f", first)).toEqual({ sha256: createHash("sha256").update("first").digest("hex"), size: 5 });
  });
});

/** A large body that is quick to make: mostly one byte, with a distinct head and tail. */
function largeBody(seed: number): Buffer {
  const body = Buffer.alloc(LARGE_BODY_BYTES + 4099, seed);
  body.write(`head ${seed}`, 0);
  body.write(`tail ${seed}`, body.length - 16);
  return body;
}

const sha256 = (body: Uint8Array) => createHash("sha256").update(body).digest("hex");

async function putInParts(s3: S3Client, bucket: string, key: string, body: Buffer): Promise<string> {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const partSize = 8 * 1024 * 1024;
  const parts: { PartNumber: number; ETag: string | undefined }[] = [];
  for (let offset = 0, number = 1; offset < body.length; offset += partSize, number++) {
    const part = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: number, Body: body.subarray(offset, offset + partSize) }));
    parts.push({ PartNumber: number, ETag: part.ETag });
  }
  const done = await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
  if (!done.VersionId) throw new Error("CompleteMultipartUpload answered no version id");
  return done.VersionId;
}

async function bodyHash(s3: S3Client, bucket: string, key: string, versionId?: string): Promise<{ sha256: string; versionId: string | undefined }> {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(versionId ? { VersionId: versionId } : {}) }));
  return { sha256: sha256((await out.Body?.transformToByteArray()) ?? new Uint8Array()), versionId: out.VersionId };
}

describe("a persisted versioned emulator", () => {
  const dir = tempDir();
  afterAll(() => dir.remove());

  it("keeps versions, delete markers and large old bodies (in files) across a restart", async () => {
    let emulator = await startEmulator({ port: 0, dataDir: dir.path, versioned: true });
    let s3 = s3Client(emulator.endpoint);
    const { bucket } = await ensureTargetResources({ endpoint: emulator.endpoint, region: "us-east-1" });
    const keptFiles = () => readdirSync(join(dir.path, "large-objects", "_versions", bucket)).map((name) => statSync(join(dir.path, "large-objects", "_versions", bucket, name)).size);
    try {
      const large = largeBody(1);
      const bigVersion = await putInParts(s3, bucket, "data/s/big", large);
      const smallNow = await put(s3, bucket, "data/s/big", "small now");
      // The replaced large body stays in a file, not in the database or in memory.
      expect(keptFiles()).toEqual([large.length]);
      const small = [await put(s3, bucket, "data/s/small", "one"), await put(s3, bucket, "data/s/small", "two")];
      const marker = (await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "data/s/small" }))).VersionId;
      const before = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));

      s3.destroy();
      await emulator.stop();
      emulator = await startEmulator({ port: 0, dataDir: dir.path, versioned: true });
      s3 = s3Client(emulator.endpoint);

      const after = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket }));
      expect({ versions: after.Versions, markers: after.DeleteMarkers }).toEqual({ versions: before.Versions, markers: before.DeleteMarkers });
      expect(after.Versions?.map((v) => v.VersionId)).toEqual([smallNow, bigVersion, small[1], small[0]]);
      expect(await text(s3, bucket, "data/s/big")).toEqual({ body: "small now", versionId: smallNow });
      expect(await bodyHash(s3, bucket, "data/s/big", bigVersion)).toEqual({ sha256: sha256(large), versionId: bigVersion });
      expect(await text(s3, bucket, "data/s/small", small[0])).toEqual({ body: "one", versionId: small[0] });
      expect(await failure(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "data/s/small" })))).toMatchObject({ headers: { "x-amz-delete-marker": "true", "x-amz-version-id": marker } });

      // A copy of the large version reads its file (the ETag is the copied bytes' MD5); removing the version removes the file.
      const copy = await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "data/s/copy", CopySource: `${bucket}/data/s/big?versionId=${bigVersion}` }));
      expect(copy.CopyObjectResult?.ETag).toBe(`"${createHash("md5").update(large).digest("hex")}"`);
      expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "data/s/copy" }))).VersionId).toBe(copy.VersionId);
      await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: "data/s/big", VersionId: bigVersion }));
      expect(keptFiles()).toEqual([]);
      expect(await failure(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "data/s/big", VersionId: bigVersion })))).toMatchObject({ name: "NoSuchVersion" });
    } finally {
      s3.destroy();
      await emulator.stop();
    }
  }, 240_000);

  it("gives objects written unversioned the version \"null\", and forgets a current version an unversioned run replaced", async () => {
    const state = tempDir();
    const start = async (versioned: boolean) => {
      const emulator = await startEmulator({ port: 0, dataDir: state.path, versioned });
      return { emulator, s3: s3Client(emulator.endpoint) };
    };
    const stop = async (run: { emulator: Emulator; s3: S3Client }) => {
      run.s3.destroy();
      await run.emulator.stop();
    };
    try {
      let run = await start(false);
      const { bucket } = await ensureTargetResources({ endpoint: run.emulator.endpoint, region: "us-east-1" });
      await run.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "k", Body: "plain" }));
      await stop(run);

      run = await start(true);
      expect(await text(run.s3, bucket, "k")).toEqual({ body: "plain", versionId: "null" });
      const versioned = await put(run.s3, bucket, "k", "versioned");
      const kept = await put(run.s3, bucket, "kept", "kept one");
      await put(run.s3, bucket, "kept", "kept two");
      expect(await text(run.s3, bucket, "k", "null")).toEqual({ body: "plain", versionId: "null" });
      await stop(run);

      run = await start(false);
      await run.s3.send(new PutObjectCommand({ Bucket: bucket, Key: "k", Body: "plain again" }));
      await stop(run);

      // The version an unversioned write replaced is gone with its body; the new object is "null" in its place, kept versions stay.
      run = await start(true);
      expect(await text(run.s3, bucket, "k")).toEqual({ body: "plain again", versionId: "null" });
      expect(await failure(run.s3.send(new GetObjectCommand({ Bucket: bucket, Key: "k", VersionId: versioned })))).toMatchObject({ name: "NoSuchVersion" });
      expect(await text(run.s3, bucket, "kept", kept)).toEqual({ body: "kept one", versionId: kept });
      const listing = await run.s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: "k" }));
      expect(listing.Versions?.map((v) => [v.Key, v.VersionId])).toEqual([["k", "null"], ["kept", expect.any(String)], ["kept", kept]]);
      await stop(run);
    } finally {
      state.remove();
    }
  }, 120_000);
});
