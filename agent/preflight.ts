// Before an agent starts: can it reach its queue and bucket? A clear error
// now beats a silent retry loop against a wrong URL.

import { HeadBucketCommand, type S3Client } from "@aws-sdk/client-s3";
import { GetQueueAttributesCommand, type SQSClient } from "@aws-sdk/client-sqs";

export class UnreachableError extends Error {
  override name = "UnreachableError";
}

function describe(error: unknown): string {
  const e = error as { name?: string; code?: string; message?: string; cause?: { code?: string } };
  return e?.code ?? e?.cause?.code ?? e?.name ?? e?.message ?? String(error);
}

/** The code or name of an error, with its message when that says more (how long a timeout waited, and for what). */
function reasonOf(error: unknown): string {
  const short = describe(error);
  const message = error instanceof Error ? error.message : "";
  return message && !message.includes(short) ? `${short}: ${message}` : short;
}

// The SDK's TimeoutError (no answer on the socket), not any error whose name ends so (a wait's OperationTimeoutError).
const NETWORK_FAILURE = /ECONN|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|^TimeoutError$/;

/**
 * A network failure of a command reading the target, as an UnreachableError naming what it tried to reach and
 * what to check (the SDK's own "connect ECONNREFUSED 127.0.0.1:4566" says neither); any other error as it was.
 */
export function unreachableOr(error: unknown, what: string, endpoint: string | undefined): unknown {
  if (!NETWORK_FAILURE.test(describe(error))) return error;
  const detail = error instanceof Error && error.message ? error.message : describe(error);
  const local = endpoint ? "is `tidemark local` running? " : "";
  return new UnreachableError(`cannot reach ${what} at ${endpoint ?? "AWS"}: ${detail} (${local}\`tidemark doctor\` checks the endpoint, proxy and credentials)`);
}

export async function checkTarget(options: {
  sqs: SQSClient;
  s3: S3Client;
  queueUrl: string;
  bucket: string;
  endpoint?: string;
}): Promise<void> {
  const where = options.endpoint ?? "AWS";
  const hint = options.endpoint ? " (is `tidemark local` running?)" : "";
  try {
    await options.sqs.send(new GetQueueAttributesCommand({ QueueUrl: options.queueUrl, AttributeNames: ["FifoQueue"] }));
  } catch (error) {
    const reason = reasonOf(error);
    if (/NonExistentQueue|QueueDoesNotExist/.test(reason)) throw new UnreachableError(`queue ${options.queueUrl} does not exist at ${where}`);
    throw new UnreachableError(`cannot reach the queue ${options.queueUrl} at ${where}: ${reason}${hint}`);
  }
  try {
    await options.s3.send(new HeadBucketCommand({ Bucket: options.bucket }));
  } catch (error) {
    const reason = reasonOf(error);
    if (/NotFound|NoSuchBucket/.test(reason)) throw new UnreachableError(`bucket ${options.bucket} does not exist at ${where}`);
    // An agent's policy may not allow HeadBucket on AWS; only a network failure is fatal here.
    if (/ECONN|ENOTFOUND|EAI_AGAIN|ETIMEDOUT|TimeoutError/.test(reason)) {
      throw new UnreachableError(`cannot reach the bucket ${options.bucket} at ${where}: ${reason}${hint}`);
    }
  }
}
