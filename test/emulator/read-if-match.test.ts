// The emulator honours If-Match on GET as S3 does, for bodies fauxqs keeps in
// memory and for those in files: S3Store.readStream with ifMatch reads while
// the object is the one asked for and throws SourceChangedError once it was
// replaced (a restore's later parts of a file on an unversioned bucket).

import { randomBytes } from "node:crypto";
import type { S3Client } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { ensureTargetResources, startEmulator, type Emulator } from "../../lambdas/local/emulator.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { SourceChangedError } from "../../lambdas/store/store.ts";

const MiB = 1024 * 1024;

let emulator: Emulator | undefined;
let client: S3Client | undefined;

afterEach(async () => {
  client?.destroy();
  client = undefined;
  await emulator?.stop();
  emulator = undefined;
});

async function bytesOf(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe("GET with If-Match on the emulator (unversioned)", () => {
  it.each([
    ["in memory", 100 * 1024],
    ["in a file", 3 * MiB],
  ])("reads the object asked for, and refuses once it was replaced (%s)", async (_where, size) => {
    emulator = await startEmulator({ port: 0, largeBodyBytes: MiB });
    const { bucket } = await ensureTargetResources({ endpoint: emulator.endpoint, region: "us-east-1" });
    client = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint });
    const store = new S3Store(client, bucket);
    const first = randomBytes(size);
    await store.put("k", first);
    const read = await store.readStream("k", { offset: 0, length: 10 });
    const etag = read?.etag;
    read?.discard();
    if (etag === undefined) throw new Error("the GET told no ETag");
    const part = await store.readStream("k", { ifMatch: etag, offset: 10, length: 1000 });
    expect(part && (await bytesOf(part.body)).equals(first.subarray(10, 1010))).toBe(true);
    await store.put("k", randomBytes(size));
    await expect(store.readStream("k", { ifMatch: etag, offset: 10, length: 1000 })).rejects.toThrow(SourceChangedError);
  });
});
