// Signing as a wrapper around a transport: every message leaves with its
// owner's signature (contract/signing.ts) as the SIGNATURE_ATTRIBUTE message
// attribute; staged payloads need none, the signed message names their SHA-256.

import { SIGNATURE_ATTRIBUTE, signMessage, type SigningKey } from "../../contract/signing.ts";
import type { MessageAttributes, StagedPayload, Transport } from "./transport.ts";

export class SigningTransport implements Transport {
  readonly #inner: Transport;
  readonly #key: SigningKey;

  constructor(inner: Transport, key: SigningKey) {
    this.#inner = inner;
    this.#key = key;
  }

  stage(payload: StagedPayload): Promise<void> {
    return this.#inner.stage(payload);
  }

  send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    return this.#inner.send(set, deduplicationId, body, { ...attributes, [SIGNATURE_ATTRIBUTE]: signMessage(this.#key, set, body) });
  }
}
