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
}

/** SQS message attributes of a message, all of type String (the owner's signature, contract/signing.ts). */
export type MessageAttributes = Readonly<Record<string, string>>;

export interface Transport {
  /** Stores a payload too large for a message; resolves once the store holds it. Storing the same key again is harmless. */
  stage(payload: StagedPayload): Promise<void>;
  /** Sends one message into the set's FIFO group, with these SQS message attributes (string values); resolves once the queue accepted it. */
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
