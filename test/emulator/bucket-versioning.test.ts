// The local cloud's bucket versioning (lambdas/local/bucket-versioning.ts):
// versioned unless asked otherwise, and a persisted emulator kept as it was
// created, also one from before the record was written.

import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DeleteObjectCommand, GetBucketVersioningCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import {
  BUCKET_VERSIONING_FILE,
  BucketVersioningMismatchError,
  BucketVersioningRecordError,
  settleBucketVersioning,
  versioningFound,
} from "../../lambdas/local/bucket-versioning.ts";
import { ensureTargetResources, startEmulator } from "../../lambdas/local/emulator.ts";
import { LOCAL_REGION, startLocalTarget } from "../../lambdas/local/target.ts";
import { tempDir } from "../support/tree.ts";

/** A persisted emulator as an earlier tidemark left it: the bucket, and `work` done on it. */
async function persisted(dataDir: string, versioned: boolean, work: (put: (key: string, body: string) => Promise<void>, remove: (key: string) => Promise<void>) => Promise<void>): Promise<void> {
  const emulator = await startEmulator({ port: 0, dataDir, versioned });
  const s3 = makeS3Client({ region: LOCAL_REGION, endpoint: emulator.endpoint });
  try {
    const { bucket } = await ensureTargetResources({ endpoint: emulator.endpoint, region: LOCAL_REGION });
    await work(
      async (key, body) => void (await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }))),
      async (key) => void (await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }))),
    );
  } finally {
    s3.destroy();
    await emulator.stop();
  }
}

it("is versioned by default and as asked where no data dir holds anything yet", () => {
  const dir = tempDir();
  try {
    expect(settleBucketVersioning(undefined, undefined)).toEqual({ versioned: true, why: "default" });
    expect(settleBucketVersioning(undefined, false)).toEqual({ versioned: false, why: "asked" });
    expect(settleBucketVersioning(join(dir.path, "new"), undefined)).toEqual({ versioned: true, why: "default", dataDir: join(dir.path, "new") });
    expect(settleBucketVersioning(join(dir.path, "new"), false)).toMatchObject({ versioned: false, why: "asked" });
  } finally {
    dir.remove();
  }
});

it("finds the versioning of a data dir from before the record by its newest write", async () => {
  const dir = tempDir();
  try {
    const empty = join(dir.path, "empty");
    await persisted(empty, false, async () => {});
    // A bucket with nothing in it keeps nothing a snapshot could name: the default holds.
    expect(versioningFound(empty)).toBeUndefined();
    expect(settleBucketVersioning(empty, undefined)).toMatchObject({ versioned: true, why: "default" });

    const plain = join(dir.path, "plain");
    await persisted(plain, false, async (put) => {
      await put("data/s/a", "one");
      await put("data/s/a", "two");
    });
    expect(versioningFound(plain)).toBe(false);
    expect(settleBucketVersioning(plain, undefined)).toMatchObject({ versioned: false, why: "found" });

    const versioned = join(dir.path, "versioned");
    await persisted(versioned, true, async (put) => {
      await put("data/s/a", "one");
      await put("data/s/a", "two");
    });
    expect(versioningFound(versioned)).toBe(true);

    // Every object deleted on a versioned bucket: its delete markers say so.
    const deleted = join(dir.path, "deleted");
    await persisted(deleted, true, async (put, remove) => {
      await put("data/s/a", "one");
      await remove("data/s/a");
    });
    expect(versioningFound(deleted)).toBe(true);

    // Run versioned once (the old --versioned-bucket), then unversioned again: the newest write was unversioned.
    const switched = join(dir.path, "switched");
    await persisted(switched, true, async (put) => put("data/s/a", "one"));
    await persisted(switched, false, async (put) => put("data/s/b", "two"));
    expect(versioningFound(switched)).toBe(false);
  } finally {
    dir.remove();
  }
});

it("keeps a data dir's versioning across starts of the local target, and refuses the other before starting anything", async () => {
  const dir = tempDir();
  try {
    const dataDir = join(dir.path, "emulator");
    const first = await startLocalTarget({ emulator: { port: 0, dataDir, versioned: false } });
    expect(first.bucketVersioning).toEqual({ versioned: false, why: "asked", dataDir });
    await first.store.put("data/s/a", Buffer.from("one"), {});
    await first.stop();

    const again = await startLocalTarget({ emulator: { port: 0, dataDir } });
    try {
      expect(again.bucketVersioning).toEqual({ versioned: false, why: "recorded", dataDir });
      const s3 = makeS3Client({ region: LOCAL_REGION, endpoint: again.endpoint });
      expect((await s3.send(new GetBucketVersioningCommand({ Bucket: again.bucket }))).Status).toBeUndefined();
      s3.destroy();
    } finally {
      await again.stop();
    }

    const servers = () => process.getActiveResourcesInfo().filter((kind) => kind === "TCPServerWrap").length;
    const before = servers();
    await expect(startLocalTarget({ emulator: { port: 0, dataDir, versioned: true } })).rejects.toThrow(BucketVersioningMismatchError);
    expect(servers()).toBe(before);

    // A record this module did not write is an error, not a guess.
    writeFileSync(join(dataDir, BUCKET_VERSIONING_FILE), "{}");
    expect(() => settleBucketVersioning(dataDir, undefined)).toThrow(BucketVersioningRecordError);
    rmSync(join(dataDir, BUCKET_VERSIONING_FILE));
    expect(settleBucketVersioning(dataDir, undefined)).toMatchObject({ versioned: false, why: "found" });

    // An in-memory target is versioned by default.
    const memory = await startLocalTarget({ emulator: { port: 0 } });
    try {
      expect(memory.bucketVersioning).toEqual({ versioned: true, why: "default" });
    } finally {
      await memory.stop();
    }
  } finally {
    dir.remove();
  }
});
