// The seam the agent sends through. Retry, rate limits and logging wrap a
// transport (retry.ts); they are not inside one.

export interface StagedPayload {
  readonly set: string;
  /** Staging key (contract/layout.ts stagingKey). */
  readonly key: string;
  readonly sha256: string;
  readonly size: number;
  /** The bytes, or a file holding them (large content spooled by the agent). */
  readonly source: { readonly bytes: Uint8Array } | { readonly file: string };
  /** Told the bytes S3 holds so far as an upload in parts goes on (0 again when an attempt fails). A throw is ignored: it never fails the upload. */
  readonly progress?: (stored: number) => void;
  /** Told true while the call waits for the bandwidth budget (bandwidth.ts) before it goes, false once it goes. A throw is ignored. */
  readonly pacing?: (waiting: boolean) => void;
}

/** SQS message attributes of a message, all of type String (the owner's signature, contract/signing.ts). */
export type MessageAttributes = Readonly<Record<string, string>>;

export interface Transport {
  /**
   * Stores a payload too large for a message; resolves once the store holds it. Storing the same key again is harmless.
   * Rejects with DeliveryRefusedError when the store will never take this payload (too large, malformed).
   */
  stage(payload: StagedPayload): Promise<void>;
  /**
   * Sends one message into the set's FIFO group, with these SQS message attributes (string values); resolves once the queue accepted it.
   * Rejects with DeliveryRefusedError when the queue will never take it.
   */
  send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void>;
}

/** A transport call failed; retryable says whether trying again may succeed (throttling, 5xx, connection). */
export class TransportError extends Error {
  override name = "TransportError";
  readonly retryable: boolean;
  constructor(message: string, retryable: boolean, options?: ErrorOptions) {
    super(message, options);
    this.retryable = retryable;
  }
}

/**
 * The target refused a payload or message for good (too large for the store,
 * malformed in its eyes): sending it again will not help. The sender takes
 * the record out of the stream and tracks its path as not replicated.
 */
export class DeliveryRefusedError extends TransportError {
  override name = "DeliveryRefusedError";
  constructor(message: string, options?: ErrorOptions) {
    super(message, false, options);
  }
}
