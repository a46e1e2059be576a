// Retry as a wrapper: a journaled record is never dropped, so every failure is
// retried with exponential backoff and jitter; only the pace differs between
// errors that look transient and errors that need an operator.

import { setTimeout as sleep } from "node:timers/promises";
import { isTransientAwsError } from "../../lambdas/aws-errors.ts";
import { TransportError, type MessageAttributes, type StagedPayload, type Transport } from "./transport.ts";

export interface RetryOptions {
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Aborting stops retrying: the pending call rejects and the records stay journaled. */
  readonly signal?: AbortSignal;
  /** Called before each wait, with the failure and the attempt number (1 for the first failure). */
  readonly onRetry?: (error: Error, attempt: number, delayMs: number) => void;
  /** Called after a call succeeded that had failed before. */
  readonly onRecovered?: () => void;
}

/** Whether an error from an AWS SDK call (or a transport) is worth an immediate retry. */
export function isRetryable(error: unknown): boolean {
  if (error instanceof TransportError) return error.retryable;
  return isTransientAwsError(error);
}

export class RetryingTransport implements Transport {
  readonly #inner: Transport;
  readonly #options: Required<Omit<RetryOptions, "signal" | "onRetry" | "onRecovered">> & RetryOptions;

  constructor(inner: Transport, options: RetryOptions = {}) {
    this.#inner = inner;
    this.#options = { baseDelayMs: 200, maxDelayMs: 30_000, ...options };
  }

  stage(payload: StagedPayload): Promise<void> {
    return this.#retry(() => this.#inner.stage(payload));
  }

  send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    return this.#retry(() => this.#inner.send(set, deduplicationId, body, attributes));
  }

  async #retry(call: () => Promise<void>): Promise<void> {
    const { baseDelayMs, maxDelayMs, signal } = this.#options;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      try {
        await call();
        if (attempt > 1) this.#options.onRecovered?.();
        return;
      } catch (error) {
        const err = error instanceof Error ? error : new Error(String(error));
        // Errors that need an operator (access denied, no such queue) are retried at the slowest pace.
        const ceiling = isRetryable(err) ? Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1)) : maxDelayMs;
        const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
        this.#options.onRetry?.(err, attempt, delay);
        await sleep(delay, undefined, signal ? { signal } : {});
      }
    }
  }
}
