// The local cloud's emulator lists like S3: every key once, in UTF-8 byte
// order, across pages, with and without a delimiter, for ListObjectsV2 and
// the older ListObjects (what `aws s3 ls` and other tools page through).

import { CreateBucketCommand, ListObjectsCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";

const BUCKET = "listing";
let emulator: Emulator;
let s3: S3Client;

const byteOrder = (keys: Iterable<string>) => [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));

/** Folders and files whose case-insensitive order differs from their byte order. */
const KEYS = ["A", "a", "B", "b", "é", "Z", "z", "😀", "\ufffd", "_"].flatMap((folder, i) => [
  `${folder}/x${i}`,
  `${folder}/Y${i}`,
  `${folder}-file`,
  `${folder}/deep/er/${i}`,
]);

beforeAll(async () => {
  emulator = await startEmulator({ port: 0 });
  s3 = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint });
  await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  for (const key of KEYS) await s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: key }));
});

afterAll(async () => {
  s3?.destroy();
  await emulator?.stop();
});

/** What S3 answers for a delimiter listing: the keys without a delimiter after the prefix, and the rolled-up prefixes, in byte order. */
function expectedEntries(prefix: string, delimiter?: string): string[] {
  const entries = new Set<string>();
  for (const key of KEYS.filter((k) => k.startsWith(prefix))) {
    const cut = delimiter ? key.indexOf(delimiter, prefix.length) : -1;
    entries.add(cut >= 0 ? key.slice(0, cut + 1) : key);
  }
  return byteOrder(entries);
}

describe("the emulator's listing pages", () => {
  it.each([1, 2, 3, 7, 1000])("ListObjectsV2 with %i keys a page lists every key once, in byte order", async (maxKeys) => {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, MaxKeys: maxKeys, ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).map((object) => object.Key ?? ""));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    expect(keys).toEqual(byteOrder(KEYS));
  });

  it.each([1, 2, 3, 5, 1000])("ListObjectsV2 with a delimiter and %i entries a page rolls up folders once each", async (maxKeys) => {
    const entries: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Delimiter: "/", MaxKeys: maxKeys, ContinuationToken: token }));
      entries.push(...(page.Contents ?? []).map((object) => object.Key ?? ""), ...(page.CommonPrefixes ?? []).map((p) => p.Prefix ?? ""));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    expect(byteOrder(entries)).toEqual(expectedEntries("", "/"));
    expect(entries.length).toBe(new Set(entries).size);
  });

  it("ListObjects (v1) with markers lists every key once, in byte order", async () => {
    const keys: string[] = [];
    let marker: string | undefined;
    do {
      const page = await s3.send(new ListObjectsCommand({ Bucket: BUCKET, MaxKeys: 3, Marker: marker }));
      const names = (page.Contents ?? []).map((object) => object.Key ?? "");
      keys.push(...names);
      marker = page.IsTruncated ? (page.NextMarker ?? names.at(-1)) : undefined;
    } while (marker);
    expect(keys).toEqual(byteOrder(KEYS));
  });

  it("pages ASCII-only mixed-case keys (the listing's fast path) in byte order too", async () => {
    const bucket = "ascii-only";
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const ascii = Array.from({ length: 60 }, (_, i) => `${["a", "B", "b", "A", "_", "~", "Z"][i % 7]}/${i % 2 ? "X" : "x"}${i}`);
    for (const key of ascii) await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: key }));
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, MaxKeys: 7, ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).map((object) => object.Key ?? ""));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    expect(keys).toEqual(byteOrder(ascii));
  });

  it("lists under a prefix after a start key in byte order", async () => {
    const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: "a/", StartAfter: "a/Y1" }));
    expect((page.Contents ?? []).map((object) => object.Key)).toEqual(byteOrder(KEYS.filter((k) => k.startsWith("a/") && Buffer.compare(Buffer.from(k), Buffer.from("a/Y1")) > 0)));
  });
});
