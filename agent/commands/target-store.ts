// The target bucket as the CLI reads it (task results, snapshots, restore),
// with the agent's credentials and config.

import type { S3Store } from "../../lambdas/store/s3-store.ts";
import type { AgentConfig } from "../config.ts";

/** Runs work with a store on the config's bucket, and closes the client after. The SDK loads only when a command reads the bucket. */
export async function withTargetStore<T>(config: AgentConfig, work: (store: S3Store) => Promise<T>): Promise<T> {
  const [{ makeS3Client }, { S3Store }] = await Promise.all([import("../../lambdas/aws-clients.ts"), import("../../lambdas/store/s3-store.ts")]);
  const s3 = makeS3Client({ region: config.region, maxAttempts: 3, ...(config.endpoint ? { endpoint: config.endpoint } : {}) });
  try {
    return await work(new S3Store(s3, config.bucket));
  } finally {
    s3.destroy();
  }
}
