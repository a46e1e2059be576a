// The AWS transport passes the transport contract on the emulator (the local
// cloud's queue and bucket, with the deployed stack's attributes) and, with
// TIDEMARK_TEST_AWS=1 and credentials, on real SQS and S3.

import { randomUUID } from "node:crypto";
import { afterAll, beforeAll } from "vitest";
import { AwsTransport } from "../../agent/transport/aws.ts";
import { makeS3Client, makeSqsClient } from "../../lambdas/aws-clients.ts";
import { ensureTargetResources } from "../../lambdas/local/emulator.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { awsSkipReason, createAwsTestTarget } from "../support/aws-account.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { receiveFromSqs, transportContract } from "../support/transport-contract.ts";

const REGION = "us-east-1";
let emulator: Awaited<ReturnType<typeof startTestEmulator>>;
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  await emulator.server.stop();
});

transportContract("SQS and S3 on the emulator", async () => {
  const name = `t-${randomUUID().slice(0, 8)}`;
  const target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, queueName: `${name}.fifo`, dlqName: `${name}-dlq.fifo`, bucket: name });
  const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
  const s3 = makeS3Client({ region: REGION, endpoint: emulator.endpoint });
  return {
    transport: new AwsTransport({ sqs, s3, queueUrl: target.queueUrl, bucket: target.bucket }),
    store: new S3Store(s3, target.bucket),
    receive: (count) => receiveFromSqs(sqs, target.queueUrl, count),
    async close() {
      sqs.destroy();
      s3.destroy();
    },
  };
});

transportContract(
  "SQS and S3 on AWS",
  async () => {
    const target = await createAwsTestTarget();
    return {
      transport: new AwsTransport({ sqs: target.sqs, s3: target.s3, queueUrl: target.queueUrl, bucket: target.bucket }),
      store: new S3Store(target.s3, target.bucket),
      receive: (count) => receiveFromSqs(target.sqs, target.queueUrl, count),
      close: () => target.remove(),
    };
  },
  await awsSkipReason(),
);
