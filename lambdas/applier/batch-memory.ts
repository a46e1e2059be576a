// What the applier carries from one message of an invocation to the next
// message of the same set. SQS hands a FIFO group's messages to one batch at a
// time and a batch to one invocation, so while a batch runs nothing but this
// applier applies to the set: the status it left after a message is the one the
// next message starts from (no GET of the status and HEAD of the next segment
// per message), and the owner record is read once per batch, at the same time
// as the status. Each message's signature is still checked against it. A
// message that throws (a store failure, a marker going on in the next
// invocation) makes the set be read again. An operator's change of the owner
// (`tidemark adopt`) or of the status reaches the applier at its next batch.
// The history entries of a set's messages wait for one segment at the end of
// the batch (batch-segments.ts). The next message's pack is read (and checked
// against what its message says) while a message writes its files, and the
// next message is parsed once for it (packed-content.ts: PackReads): reads
// only, so a message that fails its checks still writes nothing.

import type { SetStatus } from "../../contract/layout.ts";
import type { MarkerMessage, WireMessage } from "../../contract/wire.ts";
import type { OwnerRecord } from "../../contract/signing.ts";
import { BatchSegments } from "./batch-segments.ts";
import { PackReads } from "./packed-content.ts";
import { settledFields, settledWhenWritten } from "./status-schedule.ts";

/** Where an ownership check gets a set's owner record from (ownership.ts): the store, or once per batch. */
export interface OwnerReads {
  /** The set's owner record (undefined: none registered); `read` fetches it from the store when not known. */
  owner(set: string, read: () => Promise<OwnerRecord | undefined>): Promise<OwnerRecord | undefined>;
  /** The check registered the set's first owner. */
  wrote(record: OwnerRecord): void;
}

export class BatchMemory implements OwnerReads {
  /** Each set's status as the applier holds it: the object a message mutates, left as its message finished. */
  readonly #statuses = new Map<string, SetStatus>();
  readonly #owners = new Map<string, Promise<OwnerRecord | undefined>>();
  /** Each set's settled fields (status-schedule.ts) as the batch read its status. */
  readonly #settled = new Map<string, string>();
  /** Each set's history segment, written when the batch ends. */
  readonly segments = new BatchSegments();
  /** Packs whose reads started before their messages' checks. */
  readonly packs = new PackReads();
  /** The batch's message after the one being applied (handler.ts), until its pack's read is started. */
  #following: { messageId: string; body: string } | undefined;
  /** The next message as parsed to read its pack ahead: by message id, with the body it was parsed from. */
  #parsed: { messageId: string; body: string; message: WireMessage | MarkerMessage } | undefined;

  /** Names the message after the one being applied: its pack is read once this one's content is checked. */
  following(next: { messageId: string; body: string } | undefined): void {
    this.#following = next;
  }

  /** The message after the one being applied, taken once (Applier: read ahead). */
  takeFollowing(): { messageId: string; body: string } | undefined {
    const next = this.#following;
    this.#following = undefined;
    return next;
  }

  /** Keeps a message parsed ahead of its turn (one at a time). */
  parsedAhead(messageId: string, body: string, message: WireMessage | MarkerMessage): void {
    this.#parsed = { messageId, body, message };
  }

  /** The message as parsed ahead, if this is it (the same id and body); taken once. */
  takeParsed(messageId: string, body: string): WireMessage | MarkerMessage | undefined {
    const parsed = this.#parsed;
    if (!parsed || parsed.messageId !== messageId || parsed.body !== body) return undefined;
    this.#parsed = undefined;
    return parsed.message;
  }

  /**
   * The set's status: the one the batch's previous message of the set left,
   * or else read (`read`), together with the owner record (`readOwner`,
   * which the ownership check then finds here).
   */
  async status(set: string, read: () => Promise<SetStatus>, readOwner: () => Promise<OwnerRecord | undefined>): Promise<SetStatus> {
    const known = this.#statuses.get(set);
    if (known) return known;
    // A failed owner read is the check's to report; here it only must not go unhandled.
    const [status] = await Promise.all([read(), this.owner(set, readOwner).catch(() => undefined)]);
    this.#statuses.set(set, status);
    this.#settled.set(set, settledFields(status));
    return status;
  }

  /**
   * What the stored status holds of the set's settled fields: as the batch
   * read them, or as a message of the batch last wrote them (the status
   * object the batch holds was written since). Undefined when the batch holds
   * no status of the set.
   */
  settledAtStart(set: string): string | undefined {
    const status = this.#statuses.get(set);
    return (status && settledWhenWritten(status)) ?? this.#settled.get(set);
  }

  /** The set's status as the batch holds it (undefined: not read in this batch, or let go). */
  held(set: string): SetStatus | undefined {
    return this.#statuses.get(set);
  }

  owner(set: string, read: () => Promise<OwnerRecord | undefined>): Promise<OwnerRecord | undefined> {
    let owner = this.#owners.get(set);
    if (!owner) {
      owner = read();
      this.#owners.set(set, owner);
    }
    return owner;
  }

  wrote(record: OwnerRecord): void {
    this.#owners.set(record.set, Promise.resolve(record));
  }

  /** A message of the set failed part way: what is held may be ahead of the store or stale. */
  forget(set: string): void {
    this.segments.abandon(set);
    this.#statuses.delete(set);
    this.#settled.delete(set);
    this.#owners.delete(set);
  }
}
