// The target bucket as the CLI reads it (task results, snapshots, restore),
// with the agent's credentials and config.

import type { EBSClient } from "@aws-sdk/client-ebs";
import type { S3Store } from "../../lambdas/target/index.ts";
import { clientOptionsOf, READ_MINIMUM_TRANSFER } from "../aws-options.ts";
import type { AgentConfig } from "../config.ts";
import { unreachableOr } from "../preflight.ts";
import { READ_IDLE_TIMEOUT_MS } from "../../lambdas/target/http-settings.ts";

/**
 * How long a CLI read of the target may see no byte before the attempt is abandoned: an endpoint that accepts
 * connections and never answers otherwise held `snapshots`, `tasks` or `restore` for three attempts of the SDK's
 * default minute. A working S3 sends its first byte within seconds, also for a ranged GET of a large object.
 */
export const TARGET_READ_IDLE_TIMEOUT_MS = READ_IDLE_TIMEOUT_MS;

/** What a CLI read's connection must move while a request is on it (an endpoint answering byte by byte). */
export const TARGET_READ_MINIMUM_TRANSFER = READ_MINIMUM_TRANSFER;

/** The client use of the CLI's reads of the bucket and the EBS direct APIs. */
export const TARGET_READ_USE = { maxAttempts: 3, idleTimeoutMs: TARGET_READ_IDLE_TIMEOUT_MS, minimumTransfer: TARGET_READ_MINIMUM_TRANSFER } as const;

/** Runs work with a store on the config's bucket, and closes the client after. The SDK loads only when a command reads the bucket. */
export async function withTargetStore<T>(config: AgentConfig, work: (store: S3Store) => Promise<T>): Promise<T> {
  const { makeS3Client, S3Store } = await import("../../lambdas/target/index.ts");
  const s3 = makeS3Client(clientOptionsOf(config, TARGET_READ_USE));
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
  const ebs = makeClient(EBSClient, clientOptionsOf(config, TARGET_READ_USE, config.ebsEndpoint));
  try {
    return await work(ebs);
  } catch (error) {
    throw unreachableOr(error, "the EBS direct APIs", config.ebsEndpoint);
  } finally {
    ebs.destroy();
  }
}
