// The versioned emulator answers in fauxqs's own HTTP server: one listening
// socket, no second HTTP hop inside the process (whose socket writes cost as
// much CPU as the request). What it passes on to fauxqs, a body it read first
// included, still gets fauxqs's answer with the version headers.

import { DeleteObjectsCommand, GetObjectCommand, ListObjectVersionsCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";

const listening = () => process.getActiveResourcesInfo().filter((resource) => resource === "TCPServerWrap").length;

describe("the versioned emulator in one HTTP server", () => {
  let emulator: Emulator;
  let s3: S3Client;
  let bucket: string;
  let opened: number;

  beforeAll(async () => {
    const before = listening();
    emulator = await startEmulator({ port: 0, versioned: true });
    opened = listening() - before;
    bucket = (await ensureTargetResources({ endpoint: emulator.endpoint, region: "us-east-1", bucket: "one-hop" })).bucket;
    s3 = new S3Client({ region: "us-east-1", endpoint: emulator.endpoint, forcePathStyle: true, credentials: { accessKeyId: "x", secretAccessKey: "x" } });
  });

  afterAll(async () => {
    s3.destroy();
    await emulator.stop();
  });

  it("listens on one socket only", () => {
    expect(opened).toBe(1);
  });

  it("names the version fauxqs wrote and read, and passes on a body it read first (DeleteObjects)", async () => {
    const written = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: "a/k", Body: "one" }));
    expect(written.VersionId).toBeDefined();
    const read = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: "a/k" }));
    expect({ body: await read.Body?.transformToString(), versionId: read.VersionId }).toEqual({ body: "one", versionId: written.VersionId });

    const deleted = await s3.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: [{ Key: "a/k" }] } }));
    expect(deleted.Deleted?.map((entry) => entry.Key)).toEqual(["a/k"]);
    const versions = await s3.send(new ListObjectVersionsCommand({ Bucket: bucket, Prefix: "a/" }));
    expect(versions.Versions?.map((v) => v.VersionId)).toEqual([written.VersionId]);
    expect(versions.DeleteMarkers?.map((m) => m.Key)).toEqual(["a/k"]);
  });
});
