// Bodies over the emulator's large-body threshold live in files on every
// emulator (persisted or not, versioned or not), and GET (whole, ranges,
// parts, conditions), CopyObject, UploadPartCopy and reads and copies of old
// versions are answered from those files: bodyFilesReadWhole() counts every
// time such a body was read whole into memory, and stays where it was. The
// threshold and S3's 5 GiB CopyObject limit are lowered here so MiB stand for
// GiB: a copy over the limit goes in parts (UploadPartCopy), as on S3.

import { createHash, randomBytes } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import {
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { encodeMeta } from "../../contract/layout.ts";
import { encodeInline, isMarkerMessage, parseMessage } from "../../contract/wire.ts";
import { applyDelta, type DeltaPut } from "../../lambdas/applier/delta-rebuild.ts";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { copiesHashedFromFile } from "../../lambdas/local/emulator-file-bodies.ts";
import { bodyFilesReadWhole, writeBody } from "../../lambdas/local/emulator-large-objects.ts";
import { MemoryBodies } from "../../lambdas/local/emulator-memory-bodies.ts";
import { ensureTargetResources, startEmulator, type Emulator, type EmulatorOptions } from "../../lambdas/local/emulator.ts";
import { copyInParts, isCopySourceTooLarge, partSize } from "../../lambdas/s3-multipart.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { tempDir } from "../support/tree.ts";
import { sha256Of as sha } from "../support/content.ts";

const MiB = 1024 * 1024;
/** Bodies over 1 MiB go to files; CopyObject takes sources up to 6 MiB. */
const LIMITS = { largeBodyBytes: MiB, maxCopyObjectBytes: 6 * MiB } satisfies EmulatorOptions;

let emulator: Emulator | undefined;
let client: S3Client | undefined;

afterEach(async () => {
  client?.destroy();
  client = undefined;
  await emulator?.stop();
  emulator = undefined;
});

async function open(options: EmulatorOptions = {}): Promise<{ s3: S3Client; bucket: string; store: S3Store }> {
  emulator = await startEmulator({ port: 0, ...LIMITS, ...options });
  const { bucket } = await ensureTargetResources({ endpoint: emulator.endpoint, region: "us-east-1" });
  client = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint });
  return { s3: client, bucket, store: new S3Store(client, bucket) };
}

async function bytesOf(out: { Body?: { transformToByteArray(): Promise<Uint8Array> } }): Promise<Buffer> {
  return Buffer.from((await out.Body?.transformToByteArray()) ?? new Uint8Array());
}

const md5 = (bytes: Uint8Array) => `"${createHash("md5").update(bytes).digest("hex")}"`;

/** An object of body uploaded in parts of 5 MiB (the last smaller). */
async function putMultipart(s3: S3Client, bucket: string, key: string, body: Buffer): Promise<void> {
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
  const parts = [];
  for (let offset = 0, number = 1; offset < body.length; offset += 5 * MiB, number++) {
    const out = await s3.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: number, Body: body.subarray(offset, offset + 5 * MiB) }));
    parts.push({ PartNumber: number, ETag: out.ETag });
  }
  await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
}

describe("bodies in files on an unpersisted emulator", () => {
  it("serves whole bodies, ranges, parts and conditional GETs from the file, never reading the body whole", async () => {
    const { s3, bucket } = await open();
    const body = randomBytes(3 * MiB + 17);
    const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "big ü", Body: body, Metadata: { a: "1" } }));
    const multipart = randomBytes(11 * MiB + 5);
    await putMultipart(s3, bucket, "parts", multipart);
    const before = bodyFilesReadWhole();

    const whole = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big ü" }));
    expect((await bytesOf(whole)).equals(body)).toBe(true);
    expect(whole.ETag).toBe(put.ETag);
    expect(whole.Metadata).toEqual({ a: "1" });
    const range = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big ü", Range: `bytes=100-${MiB + 99}` }));
    expect((await bytesOf(range)).equals(body.subarray(100, MiB + 100))).toBe(true);
    expect(range.ContentRange).toBe(`bytes 100-${MiB + 99}/${body.length}`);
    const suffix = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big ü", Range: "bytes=-10" }));
    expect((await bytesOf(suffix)).equals(body.subarray(body.length - 10))).toBe(true);
    await expect(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big ü", Range: `bytes=${body.length}-` }))).rejects.toMatchObject({ name: "InvalidRange" });
    await expect(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big ü", IfNoneMatch: put.ETag }))).rejects.toMatchObject({ $metadata: { httpStatusCode: 304 } });
    await expect(s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big ü", IfMatch: '"other"' }))).rejects.toMatchObject({ name: "PreconditionFailed" });
    const second = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "parts", PartNumber: 2 }));
    expect((await bytesOf(second)).equals(multipart.subarray(5 * MiB, 10 * MiB))).toBe(true);
    expect(second.PartsCount).toBe(3);
    expect((await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "parts" }))).ContentLength).toBe(multipart.length);

    expect(bodyFilesReadWhole()).toBe(before);
  });

  it("copies file to file: CopyObject with new metadata, and UploadPartCopy by ranges pinned to the source's ETag", async () => {
    const { s3, bucket } = await open();
    const body = randomBytes(5 * MiB + 3);
    const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "src", Body: body, Metadata: { a: "1" } }));
    const before = bodyFilesReadWhole();

    const copied = await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "copy", CopySource: `${bucket}/src`, Metadata: { b: "2" }, MetadataDirective: "REPLACE" }));
    expect(copied.CopyObjectResult?.ETag).toBe(md5(body));
    const copy = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "copy" }));
    expect((await bytesOf(copy)).equals(body)).toBe(true);
    expect(copy.Metadata).toEqual({ b: "2" });
    // A copy onto itself (the applier refreshes metadata so) keeps the bytes.
    await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "src", CopySource: `${bucket}/src`, Metadata: { c: "3" }, MetadataDirective: "REPLACE" }));
    expect((await bytesOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "src" })))).equals(body)).toBe(true);

    const large = randomBytes(11 * MiB + 7);
    await putMultipart(s3, bucket, "large", large);
    const largeEtag = (await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "large" }))).ETag;
    const afterPut = bodyFilesReadWhole();
    await copyInParts(s3, { bucket, key: "parted", copySource: `${bucket}/large`, size: large.length, ...(largeEtag ? { etag: largeEtag } : {}), metadata: { d: "4" }, partBytes: 5 * MiB });
    const parted = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "parted" }));
    expect((await bytesOf(parted)).equals(large)).toBe(true);
    expect(parted.Metadata).toEqual({ d: "4" });
    expect(parted.ETag).toMatch(/-3"$/);
    expect(put.ETag).toBe(md5(body));
    expect(bodyFilesReadWhole()).toBe(afterPut);
    expect(afterPut).toBe(before);
  });

  it("refuses CopyObject of a source over the copy limit as S3 does, and S3Store.copy then copies it in parts", async () => {
    const { s3, bucket, store } = await open();
    const body = randomBytes(10 * MiB + 9);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "staging/s/big", Body: body }));
    const before = bodyFilesReadWhole();

    const refused = await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "x", CopySource: `${bucket}/staging/s/big` })).catch((error: unknown) => error);
    expect(isCopySourceTooLarge(refused)).toBe(true);
    const etag = (await s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "staging/s/big" }))).ETag;
    const written = await store.copy("staging/s/big", "data/s/big", { "tidemark-kind": "file" }, { ...(etag ? { ifMatch: etag } : {}) });
    // One part (parts are up to 512 MiB): the ETag of a multipart object.
    expect(written.etag).toMatch(/-1"$/);
    const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "data/s/big" }));
    expect((await bytesOf(out)).equals(body)).toBe(true);
    expect(out.Metadata).toEqual({ "tidemark-kind": "file" });

    expect(bodyFilesReadWhole()).toBe(before);
  });

  it("joins parts sent out of order or sent again (not appended as they came) into the object the part list names", async () => {
    // Copied whole below: 7 MiB.
    const { s3, bucket } = await open({ maxCopyObjectBytes: 8 * MiB });
    const one = randomBytes(5 * MiB);
    const two = randomBytes(2 * MiB + 1);
    const again = randomBytes(5 * MiB);
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "k" }));
    const send = (PartNumber: number, Body: Buffer) => s3.send(new UploadPartCommand({ Bucket: bucket, Key: "k", UploadId, PartNumber, Body }));
    await send(2, two);
    await send(1, one);
    const first = await send(1, again);
    const second = await send(2, two);
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: "k", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: first.ETag }, { PartNumber: 2, ETag: second.ETag }] } }));
    expect((await bytesOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "k" })))).equals(Buffer.concat([again, two]))).toBe(true);
    // A copy's ETag is its bytes' MD5 (as on S3), also of an object joined from parts, in order or not.
    const joined = Buffer.concat([again, two]);
    expect((await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "copy", CopySource: `${bucket}/k` }))).CopyObjectResult?.ETag).toBe(md5(joined));
    await putMultipart(s3, bucket, "in-order", joined);
    expect((await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "copy-2", CopySource: `${bucket}/in-order` }))).CopyObjectResult?.ETag).toBe(md5(joined));
    expect((await bytesOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "copy-2" })))).equals(joined)).toBe(true);
  });

  it("keeps the MD5 of an object joined from parts in order: a copy (history's before an overwrite) answers it without reading the object again", async () => {
    const { s3, bucket } = await open();
    const body = randomBytes(5 * MiB + 1000);
    await putMultipart(s3, bucket, "db", body);
    const before = copiesHashedFromFile();
    expect((await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "preserved", CopySource: `${bucket}/db` }))).CopyObjectResult?.ETag).toBe(md5(body));
    expect(copiesHashedFromFile()).toBe(before);
    expect((await bytesOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "preserved" })))).equals(body)).toBe(true);
  });

  it("refuses to copy a small (in-memory) source whose ETag is not the one the copy names, as S3 does, on an unversioned bucket", async () => {
    const { s3, bucket } = await open();
    const body = Buffer.from("what the source holds now");
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "small", Body: body }));
    const copy = (ifMatch: string) => s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "kept", CopySource: `${bucket}/small`, CopySourceIfMatch: ifMatch }));
    await expect(copy('"not-it"')).rejects.toMatchObject({ name: "PreconditionFailed" });
    await expect(s3.send(new HeadObjectCommand({ Bucket: bucket, Key: "kept" }))).rejects.toMatchObject({ name: "NotFound" });
    await copy(md5(body));
    expect((await bytesOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "kept" })))).equals(body)).toBe(true);
  });

  it("answers UploadPartCopy's errors as S3 does: a changed source, a range past the end, a part number out of range, an unknown upload", async () => {
    const { s3, bucket } = await open();
    // S3 copies a range only of a source over 5 MB.
    const body = randomBytes(5 * MiB + 1);
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "src", Body: body }));
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: "dest" }));
    const part = (extra: { PartNumber?: number; CopySourceRange?: string; CopySourceIfMatch?: string; UploadId?: string }) =>
      s3.send(new UploadPartCopyCommand({ Bucket: bucket, Key: "dest", UploadId, PartNumber: 1, CopySource: `${bucket}/src`, ...extra }));

    await expect(part({ CopySourceIfMatch: '"not-it"' })).rejects.toMatchObject({ name: "PreconditionFailed" });
    await expect(part({ CopySourceRange: `bytes=0-${body.length}` })).rejects.toMatchObject({ name: "InvalidArgument" });
    await expect(part({ PartNumber: 10_001 })).rejects.toMatchObject({ name: "InvalidArgument" });
    await expect(part({ UploadId: "no-such-upload" })).rejects.toMatchObject({ name: "NoSuchUpload" });
    const copied = await part({ CopySourceRange: `bytes=10-${MiB + 9}`, CopySourceIfMatch: md5(body) });
    expect(copied.CopyPartResult?.ETag).toBe(md5(body.subarray(10, MiB + 10)));
    await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: "dest", UploadId, MultipartUpload: { Parts: [{ PartNumber: 1, ETag: copied.CopyPartResult?.ETag }] } }));
    expect((await bytesOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "dest" })))).equals(body.subarray(10, MiB + 10))).toBe(true);
  });
});

describe("a streamed delta rebuild on the emulator", () => {
  it("rebuilds a file kept in a file from ranged reads, and a retry copies it onto itself in parts, without reading it whole", async () => {
    const { store } = await open();
    const base = randomBytes(12 * MiB + 11);
    await store.put("data/s/f.db", base, encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: sha(base) }));
    const ranges: [number, number][] = [
      [0, 4096],
      [6 * MiB + 3, 100],
      [base.length - 10, 10],
    ];
    const next = Buffer.from(base);
    for (const [offset, length] of ranges) randomBytes(length).copy(next, offset);
    const carried = Buffer.concat(ranges.map(([offset, length]) => next.subarray(offset, offset + length)));
    const message = parseMessage(
      JSON.stringify({
        v: 1,
        set: "s",
        records: [{ seq: 2, op: "put", path: "f.db", size: next.length, mode: 0o644, mtimeNs: "5", sha256: sha(next), content: encodeInline(carried), delta: { base: sha(base), blocks: [], ranges } }],
      }),
    );
    const first = isMarkerMessage(message) ? undefined : message.records[0];
    if (first?.op !== "put" || !first.delta) throw new Error("expected a delta put");
    const put: DeltaPut = { ...first, delta: first.delta };
    const meta = encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "5", sha256: sha(next) });
    const before = bodyFilesReadWhole();

    await applyDelta(store, "data/s/f.db", put, { bytes: carried }, meta, { inMemoryBytes: 0 });
    expect((await store.hash("data/s/f.db"))?.sha256).toBe(sha(next));
    // Applied again (a redelivered message): the object is checked streamed and copied onto itself, over the CopyObject limit in parts.
    await applyDelta(store, "data/s/f.db", put, { bytes: carried }, meta, { inMemoryBytes: 0 });
    expect((await store.hash("data/s/f.db"))?.sha256).toBe(sha(next));
    expect(bodyFilesReadWhole()).toBe(before);
  });
});

describe("bodies in files on a versioned emulator", () => {
  it("reads and copies an old large version from its file, ranges included", async () => {
    const { s3, bucket } = await open({ versioned: true });
    const first = randomBytes(2 * MiB + 1);
    const second = randomBytes(3 * MiB + 2);
    const v1 = (await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "db", Body: first }))).VersionId;
    const v2 = (await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "db", Body: second }))).VersionId;
    const before = bodyFilesReadWhole();

    expect((await bytesOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "db" })))).equals(second)).toBe(true);
    const old = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "db", VersionId: v1, Range: "bytes=5-1048580" }));
    expect((await bytesOf(old)).equals(first.subarray(5, 1_048_581))).toBe(true);
    expect(old.VersionId).toBe(v1);
    const current = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "db", VersionId: v2, Range: "bytes=0-99" }));
    expect((await bytesOf(current)).equals(second.subarray(0, 100))).toBe(true);

    const restored = await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "restored", CopySource: `${bucket}/db?versionId=${v1}` }));
    expect(restored.CopySourceVersionId).toBe(v1);
    expect((await bytesOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "restored" })))).equals(first)).toBe(true);
    const again = await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "current copy", CopySource: `${bucket}/db?versionId=${v2}` }));
    expect(again.CopySourceVersionId).toBe(v2);
    expect(again.VersionId).toBeTruthy();
    expect((await bytesOf(await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "current copy" })))).equals(second)).toBe(true);

    expect(bodyFilesReadWhole()).toBe(before);
  });

  it("reads an object joined from parts for its MD5 only when it is copied (rarely: an overwrite keeps the old version), and answers the right ETag", async () => {
    const { s3, bucket } = await open({ versioned: true });
    const body = randomBytes(5 * MiB + 1000);
    await putMultipart(s3, bucket, "db", body);
    const before = copiesHashedFromFile();
    expect((await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "copy", CopySource: `${bucket}/db` }))).CopyObjectResult?.ETag).toBe(md5(body));
    expect(copiesHashedFromFile()).toBe(before + 1);
  });

  it("answers a copy of an old version over the copy limit, and of an old version's bytes, as it answers one of a current object", async () => {
    const { s3, bucket } = await open({ versioned: true });
    const old = randomBytes(7 * MiB);
    const v1 = (await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "db", Body: old }))).VersionId;
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "db", Body: Buffer.from("new") }));

    const refused = await s3.send(new CopyObjectCommand({ Bucket: bucket, Key: "x", CopySource: `${bucket}/db?versionId=${v1}` })).catch((error: unknown) => error);
    expect(isCopySourceTooLarge(refused)).toBe(true);
    const empty = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "db", VersionId: v1, Range: `bytes=${old.length - 1}-` }));
    expect(empty.ContentRange).toBe(`bytes ${old.length - 1}-${old.length - 1}/${old.length}`);
    expect((await bytesOf(empty)).equals(old.subarray(old.length - 1))).toBe(true);
  });
});

describe("bodies in files on a persisted emulator", () => {
  const dir = tempDir();

  it("serves a range of a large body from its file after a restart", async () => {
    try {
      const body = randomBytes(2 * MiB + 3);
      const first = await open({ dataDir: dir.path });
      await first.s3.send(new PutObjectCommand({ Bucket: first.bucket, Key: "big", Body: body }));
      client?.destroy();
      client = undefined;
      await emulator?.stop();
      const { s3, bucket } = await open({ dataDir: dir.path });
      const before = bodyFilesReadWhole();
      const range = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "big", Range: "bytes=1048576-" }));
      expect((await bytesOf(range)).equals(body.subarray(MiB))).toBe(true);
      expect(bodyFilesReadWhole()).toBe(before);
    } finally {
      await emulator?.stop();
      emulator = undefined;
      dir.remove();
    }
  });
});

describe("MemoryBodies", () => {
  it("keeps small bodies in memory, large ones in its temp folder, and removes the folder on close", () => {
    const bodies = new MemoryBodies({ largeBodyBytes: 10 });
    bodies.upsertObject("b", { key: "small", body: Buffer.from("tiny") });
    bodies.upsertObject("b", { key: "large", body: Buffer.from("more than ten bytes") });
    expect(readdirSync(join(bodies.dir, "b"))).toHaveLength(1);
    expect(bodies.readBody("b", "small").toString()).toBe("tiny");
    expect(bodies.readBody("b", "large").toString()).toBe("more than ten bytes");
    // A small body replacing a large one takes its file along.
    bodies.upsertObject("b", { key: "large", body: Buffer.from("small") });
    expect(readdirSync(join(bodies.dir, "b"))).toEqual([]);
    writeBody(join(bodies.dir, "moved"), Buffer.from("a body written by a copy"));
    bodies.recordInFile("b", { key: "copied", body: Buffer.alloc(0) }, join(bodies.dir, "moved"));
    expect(bodies.readBody("b", "copied").toString()).toBe("a body written by a copy");
    bodies.close();
    expect(existsSync(bodies.dir)).toBe(false);
  });
});

describe("part sizes", () => {
  it("stay within S3's 10,000 parts and 5 GiB a part up to its 5 TiB object, and within the emulator's request size for files of some GiB", () => {
    for (const size of [4 * 1024 ** 3, 5 * 1024 ** 3 + 1, 80 * 1024 ** 3, 5 * 1024 ** 4]) {
      expect(Math.ceil(size / partSize(size))).toBeLessThanOrEqual(10_000);
      expect(partSize(size)).toBeLessThanOrEqual(5 * 1024 ** 3);
    }
    // fauxqs takes a request body of at most 11 MiB.
    expect(partSize(5 * 1024 ** 3 + 1)).toBeLessThanOrEqual(11 * MiB);
  });
});
