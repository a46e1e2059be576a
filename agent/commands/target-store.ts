// The target bucket as the CLI reads it (task results, snapshots, restore),
// with the agent's credentials and config.

import type { EBSClient } from "@aws-sdk/client-ebs";
import type { S3Store } from "../../lambdas/target/index.ts";
import { clientOptionsOf } from "../aws-options.ts";
import type { AgentConfig } from "../config.ts";
import { unreachableOr } from "../preflight.ts";

/** Runs work with a store on the config's bucket, and closes the client after. The SDK loads only when a command reads the bucket. */
export async function withTargetStore<T>(config: AgentConfig, work: (store: S3Store) => Promise<T>): Promise<T> {
  const { makeS3Client, S3Store } = await import("../../lambdas/target/index.ts");
  const s3 = makeS3Client(clientOptionsOf(config, { maxAttempts: 3 }));
  try {
    return await work(new S3Store(s3, config.bucket));
  } catch (error) {
    throw unreachableOr(error, `the bucket ${config.bucket}`, config.endpoint);
  } finally {
    s3.destroy();
  }
}

/** Runs work with an EBS direct API client (the config's ebsEndpoint, e.g. the local cloud's, else AWS), and closes it after. */
export async function withEbsClient<T>(config: AgentConfig, work: (ebs: EBSClient) => Promise<T>): Promise<T> {
  const [{ EBSClient }, { makeClient }] = await Promise.all([import("@aws-sdk/client-ebs"), import("../../lambdas/target/index.ts")]);
  const ebs = makeClient(EBSClient, clientOptionsOf(config, { maxAttempts: 3 }, config.ebsEndpoint));
  try {
    return await work(ebs);
  } catch (error) {
    throw unreachableOr(error, "the EBS direct APIs", config.ebsEndpoint);
  } finally {
    ebs.destroy();
  }
}
