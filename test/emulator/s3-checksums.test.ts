// The SHA-256 checksums S3 keeps, through S3Store on the emulator: every put
// and copy carries one, a HEAD reads it back, and a store not trusted to
// have checked it (an emulator records the writer's claim) reports none;
// objects are hashed as streams.

import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { startTestEmulator } from "../support/fauxqs.ts";

let emulator: Awaited<ReturnType<typeof startTestEmulator>>;
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  await emulator.server.stop();
});

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

describe("S3Store checksums", () => {
  it("puts with the body's SHA-256, and heads report it when the store is trusted to have checked it", async () => {
    const client = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint });
    const bucket = emulator.newBucket();
    const trusting = new S3Store(client, bucket, { storeVerifiesChecksums: true });
    await trusting.put("data/app/a.txt", Buffer.from("hello"), { mode: "644" });
    expect((await trusting.head("data/app/a.txt"))?.checksumSha256).toBe(sha256("hello"));
    // The emulator keeps what the writer claimed without checking it: by default it is not trusted.
    expect((await new S3Store(client, bucket).head("data/app/a.txt"))?.checksumSha256).toBeUndefined();
  });

  it("hashes an object as a stream, parts and all, and says when there is none", async () => {
    const store = new S3Store(makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }), emulator.newBucket());
    // Over the multipart threshold: put in parts, so S3 keeps no whole-object SHA-256 and a verification reads it.
    const big = Buffer.alloc(9 * 1024 * 1024, 7);
    await store.put("data/app/big.bin", big, {});
    expect(await store.hash("data/app/big.bin")).toEqual({ sha256: createHash("sha256").update(big).digest("hex"), size: big.length });
    expect(await store.hash("data/app/none")).toBeUndefined();
  });
});
