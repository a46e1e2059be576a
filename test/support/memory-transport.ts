// A transport that hands messages straight to an applier over an in-memory
// store: the whole pipeline without a queue, for fast agent tests.
// Messages leave signed by the transport's own key, as the agent's
// SigningTransport signs them.

import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { META } from "../../contract/layout.ts";
import { SIGNATURE_ATTRIBUTE, generateSigningKey, signMessage, type SigningKey } from "../../contract/signing.ts";
import type { Applier, MessageOutcome } from "../../lambdas/applier/applier.ts";
import type { TargetStore } from "../../lambdas/store/store.ts";
import type { MessageAttributes, StagedPayload, Transport } from "../../agent/transport/transport.ts";

export class MemoryTransport implements Transport {
  readonly applier: Applier;
  readonly store: TargetStore;
  readonly outcomes: MessageOutcome[] = [];
  readonly bodies: string[] = [];
  requests = 0;
  stagedBytes = 0;
  /** The next calls fail with these errors, one each. */
  readonly failures: Error[] = [];
  /** Messages to accept and then lose (as if the queue dropped them), for gap tests. */
  lose = 0;
  /** The key messages are signed with when the caller did not sign them. */
  key: SigningKey;

  constructor(applier: Applier, store: TargetStore, key: SigningKey = generateSigningKey()) {
    this.applier = applier;
    this.store = store;
    this.key = key;
  }

  #maybeFail(): void {
    const failure = this.failures.shift();
    if (failure) throw failure;
  }

  async stage(payload: StagedPayload): Promise<void> {
    this.requests += 1;
    this.#maybeFail();
    const bytes = "bytes" in payload.source ? payload.source.bytes : await readFile(payload.source.file);
    this.stagedBytes += bytes.length;
    await this.store.put(payload.key, bytes, { [META.sha256]: payload.sha256 });
  }

  async send(set: string, _deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    this.requests += 1;
    this.#maybeFail();
    this.bodies.push(body);
    if (this.lose > 0) {
      this.lose -= 1;
      return;
    }
    const signed = attributes?.[SIGNATURE_ATTRIBUTE] !== undefined ? attributes : { ...attributes, [SIGNATURE_ATTRIBUTE]: signMessage(this.key, set, body) };
    this.outcomes.push(await this.applier.applyMessage({ messageId: randomUUID(), groupId: set, body, attributes: signed }));
  }
}
