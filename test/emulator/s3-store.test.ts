import { createHash } from "node:crypto";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SourceChangedError } from "../../lambdas/store/store.ts";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { DirectS3Store } from "../../lambdas/store/direct-s3-store.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { targetStoreContract } from "../support/store-contract.ts";

let emulator: Awaited<ReturnType<typeof startTestEmulator>>;
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  await emulator.server.stop();
});

targetStoreContract("S3 on the emulator", async () =>
  new S3Store(makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }), emulator.newBucket()),
);

// The applier's store: its single-object requests around the SDK, the same contract.
targetStoreContract("S3 on the emulator, direct requests", async () =>
  new DirectS3Store(makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }), emulator.newBucket()),
);

describe("S3Store: what a staged object holds", () => {
  const claimed = createHash("sha256").update("what the uploader claimed").digest();
  const body = Buffer.from("what it uploaded");
  const upload = async (store: S3Store) =>
    store.client.send(new PutObjectCommand({ Bucket: store.bucket, Key: "staging/s/1.x", Body: body, ChecksumSHA256: claimed.toString("base64") }));

  it("reads and hashes the bytes unless the store verified the checksum it keeps (the emulator keeps whatever it is told)", async () => {
    const store = new S3Store(makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }), emulator.newBucket());
    await upload(store);
    expect((await store.contentSha256("staging/s/1.x"))?.sha256).toBe(createHash("sha256").update(body).digest("hex"));
    // On S3 the stored checksum was checked on arrival: it is taken without reading the object.
    const trusting = new S3Store(store.client, store.bucket, { storeVerifiesChecksums: true });
    expect((await trusting.contentSha256("staging/s/1.x"))?.sha256).toBe(claimed.toString("hex"));
  });

  it("sends the checked ETag as x-amz-copy-source-if-match and turns S3's 412 into SourceChangedError", async () => {
    const store = new S3Store(makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint }), emulator.newBucket());
    await upload(store);
    const sent: (string | undefined)[] = [];
    const ifMatchOf = (input: unknown) => (typeof input === "object" && input !== null && "CopySourceIfMatch" in input ? String(input.CopySourceIfMatch) : undefined);
    store.client.middlewareStack.add(
      (next) => async (args) => {
        const ifMatch = ifMatchOf(args.input);
        if (typeof args.input === "object" && args.input !== null && "CopySource" in args.input) sent.push(ifMatch);
        // The emulator ignores the condition: answer as S3 does when the source changed.
        if (ifMatch === '"stale"') throw Object.assign(new Error("At least one of the pre-conditions you specified did not hold"), { name: "PreconditionFailed", $metadata: { httpStatusCode: 412 } });
        return next(args);
      },
      { step: "initialize", name: "captureCopy" },
    );
    const etag = (await store.contentSha256("staging/s/1.x"))?.etag ?? "";
    await store.copy("staging/s/1.x", "data/s/f", {}, { ifMatch: etag });
    expect(sent).toEqual([etag]);
    await expect(store.copy("staging/s/1.x", "data/s/g", {}, { ifMatch: '"stale"' })).rejects.toThrow(SourceChangedError);
  });
});
