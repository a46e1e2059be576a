// Retry as a wrapper: transient failures and failures that need an operator
// are retried forever with exponential backoff and jitter (only the pace
// differs); a refusal of the payload itself is tried a few times, so a blip is
// not mistaken for one, then reported as DeliveryRefusedError.

import { setTimeout as sleep } from "node:timers/promises";
import { classifyFailure } from "./failure-kind.ts";
import { DeliveryRefusedError, type MessageAttributes, type StagedPayload, type Transport } from "./transport.ts";

export interface RetryOptions {
  readonly baseDelayMs?: number;
  readonly maxDelayMs?: number;
  /** Attempts a refused payload or message gets before DeliveryRefusedError. @default 3 */
  readonly refusedAttempts?: number;
  /** Aborting stops retrying: the pending call rejects and the records stay journaled. */
  readonly signal?: AbortSignal;
  /** Called before each wait, with the failure and the attempt number (1 for the first failure). */
  readonly onRetry?: (error: Error, attempt: number, delayMs: number) => void;
  /** Called after a call succeeded that had failed before. */
  readonly onRecovered?: () => void;
}

/** Whether an error from an AWS SDK call (or a transport) is worth an immediate retry. */
export function isRetryable(error: unknown): boolean {
  return classifyFailure(error) === "transient";
}

export class RetryingTransport implements Transport {
  readonly #inner: Transport;
  readonly #options: Required<Omit<RetryOptions, "signal" | "onRetry" | "onRecovered">> & RetryOptions;

  constructor(inner: Transport, options: RetryOptions = {}) {
    this.#inner = inner;
    this.#options = { baseDelayMs: 200, maxDelayMs: 30_000, refusedAttempts: 3, ...options };
  }

  stage(payload: StagedPayload): Promise<void> {
    return this.#retry(() => this.#inner.stage(payload));
  }

  send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    return this.#retry(() => this.#inner.send(set, deduplicationId, body, attributes));
  }

  async #retry(call: () => Promise<void>): Promise<void> {
    const { baseDelayMs, maxDelayMs, refusedAttempts, signal } = this.#options;
    for (let attempt = 1; ; attempt++) {
      signal?.throwIfAborted();
      try {
        await call();
        if (attempt > 1) this.#options.onRecovered?.();
        return;
      } catch (error) {
        const err = error instanceof Error ? error : new Error(String(error));
        const kind = classifyFailure(err);
        if (kind === "refused" && attempt >= refusedAttempts) {
          throw err instanceof DeliveryRefusedError ? err : new DeliveryRefusedError(`refused ${attempt} times: ${err.name}: ${err.message}`, { cause: err });
        }
        // Errors that need an operator (access denied, no such queue) are retried at the slowest pace.
        const ceiling = kind === "operator" ? maxDelayMs : Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
        const delay = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
        this.#options.onRetry?.(err, attempt, delay);
        await sleep(delay, undefined, signal ? { signal } : {});
      }
    }
  }
}
