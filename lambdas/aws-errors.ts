// Which failures of an AWS call are transient: shared by the agent's retrying
// transport and the applier's direct S3 requests.

const CONNECTION_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "ENOTFOUND", "EAI_AGAIN", "EHOSTUNREACH", "ENETUNREACH"]);

/** Whether an error from an AWS call (SDK or direct) is worth an immediate retry: throttling, a 5xx, a dropped connection. */
export function isTransientAwsError(error: unknown): boolean {
  const e = error as { name?: string; code?: string; $metadata?: { httpStatusCode?: number }; $retryable?: unknown; cause?: unknown };
  const status = e?.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429)) return true;
  if (e?.$retryable) return true;
  const name = e?.name ?? "";
  if (/Throttl|SlowDown|RequestLimitExceeded|TooManyRequests|TimeoutError|RequestTimeout/.test(name)) return true;
  if (e?.code && CONNECTION_CODES.has(e.code)) return true;
  if (e?.cause) return isTransientAwsError(e.cause);
  return false;
}
