// A transport that hands messages straight to an applier over an in-memory
// store: the whole pipeline without a queue, for fast agent tests.
// Messages leave signed by the transport's own key, as the agent's
// SigningTransport signs them. Like an SQS FIFO queue (deduplication scope:
// message group), it accepts a message whose deduplication id its group saw
// in the last 5 minutes and delivers nothing: FIFO recovery relies on that.
// An applier that throws fails the send, and the resend that follows stands
// for the queue handing the message out again.

import { randomUUID } from "node:crypto";
import { readFile } from "node:fs/promises";
import { META } from "../../contract/layout.ts";
import { SIGNATURE_ATTRIBUTE, generateSigningKey, signMessage, type SigningKey } from "../../contract/signing.ts";
import type { Applier, MessageOutcome } from "../../lambdas/applier/applier.ts";
import type { TargetStore } from "../../lambdas/store/store.ts";
import { DeliveryRefusedError, type MessageAttributes, type StagedPayload, type Transport } from "../../agent/transport/transport.ts";

/** SQS FIFO's deduplication interval. */
export const DEDUPLICATION_WINDOW_MS = 5 * 60_000;

const dedupKey = (group: string, deduplicationId: string) => `${group}\n${deduplicationId}`;

/** A message as the queue handed it on: what a consumer of the set's group receives. */
export interface DeliveredMessage {
  readonly group: string;
  readonly deduplicationId: string;
  readonly body: string;
  readonly attributes: MessageAttributes;
}

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
  /** Messages handed to the applier, in order: no duplicates or lost messages, but a resend of one the applier failed on. */
  readonly delivered: DeliveredMessage[] = [];
  /** The clock of the deduplication window. */
  now: () => number = Date.now;
  /** When each group's deduplication ids were first accepted, oldest first. */
  readonly #seen = new Map<string, number>();

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
    const bytes = "bytes" in payload.source ? payload.source.bytes : await readSpool(payload.key, payload.source.file);
    this.stagedBytes += bytes.length;
    await this.store.put(payload.key, bytes, { [META.sha256]: payload.sha256 });
  }

  async send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    this.requests += 1;
    this.#maybeFail();
    this.bodies.push(body);
    if (this.#isDuplicate(set, deduplicationId)) return;
    if (this.lose > 0) {
      this.lose -= 1;
      return;
    }
    const signed = attributes?.[SIGNATURE_ATTRIBUTE] !== undefined ? attributes : { ...attributes, [SIGNATURE_ATTRIBUTE]: signMessage(this.key, set, body) };
    this.delivered.push({ group: set, deduplicationId, body, attributes: signed });
    try {
      this.outcomes.push(await this.applier.applyMessage({ messageId: randomUUID(), groupId: set, body, attributes: signed }));
    } catch (error) {
      // A failed invocation: the queue would hand the message out again, and the caller's resend stands for that.
      this.#seen.delete(dedupKey(set, deduplicationId));
      throw error;
    }
  }

  /** Whether the group accepted this id within the window; if not, the id starts a new window now. */
  #isDuplicate(group: string, deduplicationId: string): boolean {
    const now = this.now();
    for (const [key, at] of this.#seen) {
      if (now - at < DEDUPLICATION_WINDOW_MS) break;
      this.#seen.delete(key);
    }
    const key = dedupKey(group, deduplicationId);
    const at = this.#seen.get(key);
    if (at !== undefined && now - at < DEDUPLICATION_WINDOW_MS) return true;
    this.#seen.delete(key);
    this.#seen.set(key, now);
    return false;
  }
}

/** The spooled bytes of a staged payload; a spool that is gone is refused for good, as the AWS transport refuses it. */
async function readSpool(key: string, file: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") throw new DeliveryRefusedError(`the spooled content of ${key} is gone (${file})`);
    throw error;
  }
}
