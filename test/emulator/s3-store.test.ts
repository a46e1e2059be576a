import { afterAll, beforeAll } from "vitest";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
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
