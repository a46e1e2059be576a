// The agent's first question to the target (queue and bucket there?), asked
// with clients of its own: the agent's long-lived clients have no minimum
// transfer (S3 may pad a long answer with a space now and then), so an
// endpoint answering byte by byte held `tidemark run`, and `verify`, `task`,
// `mirror` and `prune` starting an agent for the duration, before any output.

import { makeS3Client, makeSqsClient, type MinimumTransfer } from "../lambdas/target/index.ts";
import { clientOptionsOf, READ_MINIMUM_TRANSFER } from "./aws-options.ts";
import type { AgentConfig } from "./config.ts";
import { checkTarget } from "./preflight.ts";

/** A silent connection fails the check in this long (the SDK's default: a minute). */
const START_CHECK_IDLE_TIMEOUT_MS = 15_000;

/**
 * Throws UnreachableError when the config's queue or bucket cannot be reached, answers too slowly, or is missing.
 * `signal` (a start interrupted) closes the check's connections at once, so none keeps the process alive.
 */
export async function checkTargetAtStart(config: AgentConfig, options: { signal?: AbortSignal; minimumTransfer?: MinimumTransfer } = {}): Promise<void> {
  const clientOptions = clientOptionsOf(config, { maxAttempts: 1, idleTimeoutMs: START_CHECK_IDLE_TIMEOUT_MS, minimumTransfer: options.minimumTransfer ?? READ_MINIMUM_TRANSFER });
  const sqs = makeSqsClient(clientOptions);
  const s3 = makeS3Client(clientOptions);
  const close = () => {
    sqs.destroy();
    s3.destroy();
  };
  options.signal?.addEventListener("abort", close, { once: true });
  try {
    await checkTarget({ sqs, s3, queueUrl: config.queueUrl, bucket: config.bucket, ...(config.endpoint ? { endpoint: config.endpoint } : {}) });
  } finally {
    options.signal?.removeEventListener("abort", close);
    close();
  }
}
