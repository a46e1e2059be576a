// The bucket as `tidemark restore` reads it: object bytes through direct
// signed GETs where no proxy or extra CA applies to its endpoint, else through
// the SDK (lambdas/target/restore-store.ts); everything else as other
// commands read it.

import type { TargetStore } from "../../lambdas/target/index.ts";
import { clientOptionsOf } from "../aws-options.ts";
import type { AgentConfig } from "../config.ts";
import { unreachableOr } from "../preflight.ts";
import { TARGET_READ_USE } from "./target-store.ts";

/**
 * How the restore read object bytes: "direct", signed GETs sent without the SDK (objects over 8 MiB, and empty ones,
 * still through it), or "sdk", every read through the SDK (a proxy or CA bundle applies to the bucket's endpoint).
 */
export type ReadPath = "direct" | "sdk";

/** Runs work with the restore's store on the config's bucket (and how it reads), and closes its connections after. */
export async function withRestoreStore<T>(config: AgentConfig, work: (store: TargetStore, readPath: () => Promise<ReadPath>) => Promise<T>): Promise<T> {
  const [{ makeS3Client }, { RestoreS3Store }] = await Promise.all([import("../../lambdas/target/index.ts"), import("../../lambdas/target/restore-store.ts")]);
  // As the CLI's other reads: an endpoint that never answers, or answers byte by byte, fails the restore instead of holding it.
  const options = clientOptionsOf(config, TARGET_READ_USE);
  const s3 = makeS3Client(options);
  try {
    const store = new RestoreS3Store(s3, config.bucket, options.http ?? {});
    return await work(store, async () => ((await store.readsDirect()) ? "direct" : "sdk"));
  } catch (error) {
    throw unreachableOr(error, `the bucket ${config.bucket}`, config.endpoint);
  } finally {
    s3.destroy();
  }
}
