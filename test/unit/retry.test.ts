// Retrying transport: which failures are transient, the backoff between
// attempts, and that nothing is given up on until the agent stops.

import { expect, it } from "vitest";
import { isRetryable, RetryingTransport } from "../../agent/transport/retry.ts";
import { classifyFailure } from "../../agent/transport/failure-kind.ts";
import { DeliveryRefusedError, TransportError, type StagedPayload, type Transport } from "../../agent/transport/transport.ts";

function awsError(name: string, status?: number, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(name), { name, ...(status !== undefined ? { $metadata: { httpStatusCode: status } } : {}), ...extra });
}

it.each([
  ["SQS throttling", awsError("ThrottlingException", 400)],
  ["S3 SlowDown", awsError("SlowDown", 503)],
  ["HTTP 429", awsError("TooManyRequestsException", 429)],
  ["a 500", awsError("InternalError", 500)],
  ["a refused connection", Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" })],
  ["a reset wrapped as the cause", new Error("socket hang up", { cause: Object.assign(new Error("reset"), { code: "ECONNRESET" }) })],
  ["a retryable transport error", new TransportError("busy", true)],
])("treats %s as transient", (_label, error) => {
  expect(isRetryable(error)).toBe(true);
});

it.each([
  ["access denied", awsError("AccessDenied", 403)],
  ["a missing queue", awsError("QueueDoesNotExist", 400)],
  ["a message too large", awsError("InvalidParameterValue", 400)],
  ["a plain bug", new TypeError("x is undefined")],
])("treats %s as needing an operator", (_label, error) => {
  expect(isRetryable(error)).toBe(false);
});

/** A transport that fails the first `failures` calls with `error`. */
function flaky(failures: number, error: Error) {
  const calls: string[] = [];
  const transport: Transport = {
    async stage(payload: StagedPayload) {
      calls.push(`stage ${payload.key}`);
      if (calls.length <= failures) throw error;
    },
    async send(set: string, id: string) {
      calls.push(`send ${set} ${id}`);
      if (calls.length <= failures) throw error;
    },
  };
  return { transport, calls };
}

it("retries a throttled send with growing delays until it goes through", async () => {
  const { transport, calls } = flaky(4, awsError("ThrottlingException", 400));
  const delays: number[] = [];
  let recovered = 0;
  const retrying = new RetryingTransport(transport, {
    baseDelayMs: 4,
    maxDelayMs: 1_000,
    onRetry: (_error, _attempt, delay) => delays.push(delay),
    onRecovered: () => (recovered += 1),
  });
  await retrying.send("docs", "docs:1-5", "{}");
  expect(calls).toEqual(Array.from({ length: 5 }, () => "send docs docs:1-5"));
  expect(recovered).toBe(1);
  // Exponential with jitter: each delay is within [ceiling/2, ceiling] for ceiling = 4, 8, 16, 32.
  delays.forEach((delay, i) => {
    const ceiling = 4 * 2 ** i;
    expect(delay).toBeGreaterThanOrEqual(ceiling / 2);
    expect(delay).toBeLessThanOrEqual(ceiling);
  });
});

it("waits at the slowest pace on errors that need an operator, and still retries", async () => {
  const { transport, calls } = flaky(1, awsError("AccessDenied", 403));
  const delays: number[] = [];
  const retrying = new RetryingTransport(transport, { baseDelayMs: 1, maxDelayMs: 20, onRetry: (_e, _a, delay) => delays.push(delay) });
  await retrying.stage({ set: "docs", key: "staging/docs/1.abc", sha256: "abc", size: 1, source: { bytes: new Uint8Array([1]) } });
  expect(calls).toHaveLength(2);
  expect(delays[0]).toBeGreaterThanOrEqual(10);
});

it("stops retrying when the agent stops, leaving the call failed", async () => {
  const { transport, calls } = flaky(Number.POSITIVE_INFINITY, awsError("InternalError", 500));
  const controller = new AbortController();
  const retrying = new RetryingTransport(transport, {
    baseDelayMs: 5,
    signal: controller.signal,
    onRetry: (_e, attempt) => {
      if (attempt === 3) controller.abort();
    },
  });
  await expect(retrying.send("docs", "docs:1-1", "{}")).rejects.toThrow(/abort/i);
  expect(calls).toHaveLength(3);
});

it.each([
  ["a payload too large for the store", awsError("EntityTooLarge", 400)],
  ["a part the store will not take", awsError("InvalidPart", 400)],
  ["a message the queue will not take", awsError("InvalidParameterValue", 400)],
  ["a 413", awsError("PayloadTooLarge", 413)],
  ["a transport's own refusal", new DeliveryRefusedError("larger than the store allows")],
])("gives up on %s after a few tries, as a refusal", async (_label, error) => {
  expect(classifyFailure(error)).toBe("refused");
  const { transport, calls } = flaky(Number.POSITIVE_INFINITY, error);
  const retrying = new RetryingTransport(transport, { baseDelayMs: 1, maxDelayMs: 2 });
  await expect(retrying.send("docs", "docs:1-1", "{}")).rejects.toBeInstanceOf(DeliveryRefusedError);
  expect(calls).toHaveLength(3);
});

it("takes a refusal that goes away within a few tries for the blip it was", async () => {
  const { transport, calls } = flaky(2, awsError("InvalidPart", 400));
  await new RetryingTransport(transport, { baseDelayMs: 1, maxDelayMs: 2 }).send("docs", "docs:1-1", "{}");
  expect(calls).toHaveLength(3);
});

it.each([
  ["access denied", awsError("AccessDenied", 403)],
  ["a missing queue", awsError("QueueDoesNotExist", 400)],
  ["expired credentials", awsError("ExpiredToken", 400)],
  ["a plain bug", new TypeError("x is undefined")],
])("never takes %s for a refusal of the record", (_label, error) => {
  expect(classifyFailure(error)).toBe("operator");
});
