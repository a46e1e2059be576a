// Keeps a batch's messages in flight while the local applier handles it. On
// AWS the applier's timeout is a sixth of the queue's visibility timeout, so
// a batch is never handed out again while it is handled; the local applier
// has no timeout (a 3 GiB file takes minutes on a loaded host), and without
// this its messages came back while still handled: each copy waited for its
// group in one of the poller's slots, starving every other set, and counted
// toward the dead-letter queue.

import { ChangeMessageVisibilityBatchCommand, type Message, type SQSClient } from "@aws-sdk/client-sqs";

export class VisibilityHeartbeat {
  readonly #sqs: SQSClient;
  readonly #queueUrl: string;
  readonly #seconds: number;
  readonly #onError: ((error: Error) => void) | undefined;
  /** Receipt handles the handler made visible again itself (a marker's action goes on in the next batch). */
  readonly #released = new Set<string>();

  constructor(options: { sqs: SQSClient; queueUrl: string; visibilityTimeoutSeconds: number; onError?: (error: Error) => void }) {
    if (!(options.visibilityTimeoutSeconds > 0)) throw new RangeError("visibilityTimeoutSeconds must be above 0");
    this.#sqs = options.sqs;
    this.#queueUrl = options.queueUrl;
    this.#seconds = options.visibilityTimeoutSeconds;
    this.#onError = options.onError;
  }

  /** Not extended any more: the handler made this message visible again. */
  release(receiptHandle: string): void {
    this.#released.add(receiptHandle);
  }

  /** Extends the batch's visibility every third of the timeout until the returned function is called. */
  keep(batch: readonly Message[]): () => void {
    const handles = batch.map((m) => m.ReceiptHandle ?? "").filter((h) => h !== "");
    const timer = setInterval(() => void this.#extend(handles), (this.#seconds * 1000) / 3);
    return () => {
      clearInterval(timer);
      for (const handle of handles) this.#released.delete(handle);
    };
  }

  async #extend(handles: readonly string[]): Promise<void> {
    const kept = handles.filter((h) => !this.#released.has(h));
    if (kept.length === 0) return;
    try {
      await this.#sqs.send(
        new ChangeMessageVisibilityBatchCommand({
          QueueUrl: this.#queueUrl,
          Entries: kept.map((handle, i) => ({ Id: String(i), ReceiptHandle: handle, VisibilityTimeout: this.#seconds })),
        }),
      );
    } catch (error) {
      this.#onError?.(error instanceof Error ? error : new Error(String(error)));
    }
  }
}
