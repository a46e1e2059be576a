// The S3 store passes the store contract on real S3 too: only with
// TIDEMARK_TEST_AWS=1 and credentials (skipped otherwise, saying why). A
// bucket per test, as the emulator's run has; all removed at the end.

import { afterAll, describe } from "vitest";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { awsSkipReason, createAwsTestBucket, type AwsTestBucket } from "../support/aws-account.ts";
import { targetStoreContract } from "../support/store-contract.ts";

const skipReason = await awsSkipReason();

describe.skipIf(skipReason !== undefined)(`S3Store on AWS${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  const buckets: AwsTestBucket[] = [];
  afterAll(async () => {
    for (const bucket of buckets.splice(0)) await bucket.remove();
  });
  targetStoreContract("S3 on AWS", async () => {
    const bucket = await createAwsTestBucket();
    buckets.push(bucket);
    return new S3Store(bucket.s3, bucket.bucket);
  });
});
