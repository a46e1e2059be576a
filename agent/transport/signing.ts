// Signing as a wrapper around a transport: every message leaves with its
// owner's signature (contract/signing.ts) as the SIGNATURE_ATTRIBUTE message
// attribute; staged payloads need none, the signed message names their SHA-256.

import { createHash } from "node:crypto";
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
    return this.#inner.send(set, keyedDeduplicationId(deduplicationId, this.#key.keyId), body, { ...attributes, [SIGNATURE_ATTRIBUTE]: signMessage(this.#key, set, body) });
  }
}

/** SQS's limit on a MessageDeduplicationId. */
const MAX_DEDUPLICATION_ID_LENGTH = 128;

/**
 * The deduplication id with the signing key's id: two hosts with one journal's numbering (a copied state folder, before
 * its key was replaced) would otherwise send the same id for different messages, and the queue would drop the second
 * for five minutes as a duplicate of the first. A resend of this host's own message keeps its id. Past SQS's 128
 * characters (a long set name and large seqs), its SHA-256 instead.
 */
export function keyedDeduplicationId(deduplicationId: string, keyId: string): string {
  const keyed = `${deduplicationId}:${keyId}`;
  return keyed.length <= MAX_DEDUPLICATION_ID_LENGTH ? keyed : createHash("sha256").update(keyed).digest("hex");
}
