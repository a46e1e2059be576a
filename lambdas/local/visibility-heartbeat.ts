// Keeps a batch's messages in flight while the local applier handles it. On
// AWS the applier's timeout is a sixth of the queue's visibility timeout, so
// a batch is never handed out again while it is handled; the local applier
// has no timeout (a 3 GiB file takes minutes on a loaded host), and without
// this its messages came back while still handled: each copy waited for its
// group in one of the poller's slots, starving every other set, and counted
// toward the dead-letter queue.

import { ChangeMessageVisibilityBatchCommand, type ChangeMessageVisibilityBatchCommandOutput, type Message } from "@aws-sdk/client-sqs";

/** What the heartbeat asks of an SQS client. */
export interface VisibilitySender {
  send(command: ChangeMessageVisibilityBatchCommand): Promise<ChangeMessageVisibilityBatchCommandOutput>;
}

export class VisibilityExtendError extends Error {
  override name = "VisibilityExtendError";
}

export class VisibilityHeartbeat {
  readonly #sqs: VisibilitySender;
  readonly #queueUrl: string;
  readonly #seconds: number;
  readonly #onError: ((error: Error) => void) | undefined;
  /** Receipt handles the handler made visible again itself (a marker's action goes on in the next batch). */
  readonly #released = new Set<string>();
  /** Extends on their way to the queue. */
  readonly #pending = new Set<Promise<void>>();

  constructor(options: { sqs: VisibilitySender; queueUrl: string; visibilityTimeoutSeconds: number; onError?: (error: Error) => void }) {
    if (!(options.visibilityTimeoutSeconds > 0)) throw new RangeError("visibilityTimeoutSeconds must be above 0");
    this.#sqs = options.sqs;
    this.#queueUrl = options.queueUrl;
    this.#seconds = options.visibilityTimeoutSeconds;
    this.#onError = options.onError;
  }

  /**
   * Not extended any more: the handler makes this message visible again. Resolves once no extend sent before is on
   * its way, so the caller's own visibility change lands after it (else the message stays hidden one more timeout).
   */
  async release(receiptHandle: string): Promise<void> {
    this.#released.add(receiptHandle);
    await Promise.all([...this.#pending]);
  }

  /**
   * Extends the batch's visibility every third of the timeout until the returned function is called, which resolves
   * once the batch's last extend has landed (none lands after the batch is deleted, or its client destroyed).
   */
  keep(batch: readonly Message[]): () => Promise<void> {
    const handles = batch.map((m) => m.ReceiptHandle ?? "").filter((h) => h !== "");
    let pending: Promise<void> | undefined;
    const timer = setInterval(() => {
      // One extend at a time per batch: a slow queue does not pile them up.
      if (pending) return;
      const extend = this.#extend(handles).finally(() => {
        this.#pending.delete(extend);
        pending = undefined;
      });
      pending = extend;
      this.#pending.add(extend);
    }, (this.#seconds * 1000) / 3);
    return async () => {
      clearInterval(timer);
      await pending;
      for (const handle of handles) this.#released.delete(handle);
    };
  }

  async #extend(handles: readonly string[]): Promise<void> {
    const kept = handles.filter((h) => !this.#released.has(h));
    if (kept.length === 0) return;
    try {
      const result = await this.#sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.#queueUrl,
          Entries: kept.map((handle, i) => ({ Id: String(i), ReceiptHandle: handle, VisibilityTimeout: this.#seconds })),
        }),
      );
      const failed = result.Failed ?? [];
      if (failed.length > 0) {
        this.#onError?.(new VisibilityExtendError(`could not keep ${failed.length} of ${kept.length} message(s) in flight (they may be handed out again while handled): ${failed[0]?.Code ?? ""} ${failed[0]?.Message ?? ""}`.trimEnd()));
      }
    } catch (error) {
      this.#onError?.(error instanceof Error ? error : new Error(String(error)));
    }
  }
}
