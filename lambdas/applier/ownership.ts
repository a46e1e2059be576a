// Which messages may change a set (DESIGN 8): only those signed by the key
// registered as the set's owner (state/<set>/owner.json), and on AWS, when the
// stack gives each host its own role, only those sent by that role. A new set
// registers the key of its first signed message; moving a set to another key
// is `tidemark adopt`, an operator's write to state/, never the applier's.
// Unsigned markers sent straight to the queue come, with the stack's
// `tidemark:markerSenders`, only from the set's host role or a listed sender.

import { z } from "zod";
import type { SetStatus } from "../../contract/layout.ts";
import { OwnerRecordError, readOwner, writeOwner } from "../target/owner.ts";
import { BadSignatureError, parseSignature, SIGNATURE_ATTRIBUTE, signatureValid, type OwnerRecord, type ParsedSignature } from "../../contract/signing.ts";
import type { TargetStore } from "../store/store.ts";
import { APPLIER_ENV } from "../environment.ts";
import type { OwnerReads } from "./batch-memory.ts";

/** What the applier knows of who sent a message. */
export interface MessageOrigin {
  readonly messageId: string;
  readonly body: string;
  /** SQS message attributes (string values); the signature is SIGNATURE_ATTRIBUTE. */
  readonly attributes?: Readonly<Record<string, string>>;
  /** The SQS SenderId attribute: on AWS, "<role id>:<session>" for a role, the user id for a user. */
  readonly senderId?: string;
}

/** Why a message may not change its set; nothing of it is applied. */
export interface Refusal {
  readonly reason: string;
  readonly keyId?: string;
  readonly sender?: string;
}

/** A message that may change its set: signed by the set's owner. */
export interface Acceptance {
  readonly accepted: true;
  /**
   * When `tidemark adopt` made the signing key the set's owner (ms, the owner record's `since`): its records count no
   * earlier (history/record-time.ts). Undefined for the set's first owner (it took over no history) or when unreadable.
   */
  readonly ownerSince?: number;
}

/** The seam the applier asks before it applies a set's records. */
export interface OwnershipCheck {
  /**
   * An acceptance when the message may change the set (registering the set's first owner if it has none); else why
   * not. Throws only when the store fails. `owners`: where the owner record is read once per batch (batch-memory.ts).
   */
  check(set: string, origin: MessageOrigin, status: SetStatus, owners?: OwnerReads): Promise<Refusal | Acceptance>;
  /**
   * Undefined when an unsigned marker sent straight to the queue (console, script) may add a recovery point to the
   * set; else why not. Such a marker writes and deletes nothing, so it needs no owner's signature, but where the stack
   * gives each host its own role, another host's role may not speak for the set. Absent: every sender may.
   */
  checkMarker?(set: string, origin: MessageOrigin): Refusal | undefined;
  /**
   * For a message the applier could not read (not JSON, not the wire schema, another set than its group): undefined
   * when it carries the set's owner's valid signature (the owner's message was lost: a rejection of the set's own),
   * else the refusal that names it as not the owner's. Registers no owner. Absent: every such message counts as the owner's.
   */
  unreadable?(set: string, origin: MessageOrigin, error: string, owners?: OwnerReads, hasHistory?: boolean): Promise<Refusal | undefined>;
}

/** The role id of a SenderId ("AROA...:session" for an assumed role). */
function roleIdOf(senderId: string): string {
  return senderId.split(":")[0] ?? senderId;
}

/** Environment variable with the stack's map of set -> role id of the host that owns it (JSON object). */
export const SET_ROLES_ENV = APPLIER_ENV.setRoles;

export class SetRolesError extends Error {
  override name = "SetRolesError";
}

/** The set -> role id map the stack gives the applier; empty when every host shares one policy. */
export function setRolesFromEnvironment(env: NodeJS.ProcessEnv): Map<string, string> {
  const text = env[SET_ROLES_ENV];
  if (!text) return new Map();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new SetRolesError(`${SET_ROLES_ENV} is not JSON: ${(error as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json) || Object.values(json).some((v) => typeof v !== "string" || v === "")) {
    throw new SetRolesError(`${SET_ROLES_ENV} must be a JSON object of set name -> role id`);
  }
  return new Map(Object.entries(json as Record<string, string>));
}

/** Environment variable with the stack's `tidemark:markerSenders`: a JSON array of { id, arn }. */
export const MARKER_SENDERS_ENV = APPLIER_ENV.markerSenders;

export class MarkerSendersError extends Error {
  override name = "MarkerSendersError";
}

/** A principal allowed to send markers straight to the queue: the unique id SQS names it by, and its ARN. */
export interface MarkerSender {
  /** RoleId ("AROA...") of a role, UserId ("AIDA...") of a user. */
  readonly id: string;
  readonly arn: string;
}

const MarkerSendersSchema = z.array(z.object({ id: z.string().min(1), arn: z.string().min(1) }));

/** The stack's marker senders, by id; undefined when the stack has no `tidemark:markerSenders` (the looser default). */
export function markerSendersFromEnvironment(env: NodeJS.ProcessEnv): ReadonlyMap<string, string> | undefined {
  const text = env[MARKER_SENDERS_ENV];
  if (text === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new MarkerSendersError(`${MARKER_SENDERS_ENV} is not JSON: ${(error as Error).message}`);
  }
  const parsed = MarkerSendersSchema.safeParse(json);
  if (!parsed.success) throw new MarkerSendersError(`${MARKER_SENDERS_ENV} must be a JSON array of { "id": unique id, "arn": ARN }`);
  return new Map(parsed.data.map((sender) => [sender.id, sender.arn]));
}

export interface SignedOwnershipOptions {
  readonly now?: () => Date;
  /** Set -> the role id (RoleId, "AROA...") of the host role allowed to send its messages (the stack's `tidemark:hosts`). */
  readonly setRoles?: ReadonlyMap<string, string>;
  /**
   * Unique id (RoleId or UserId) -> ARN of the principals allowed to send markers straight to the queue for any set
   * (the stack's `tidemark:markerSenders`). Absent: the looser default (see checkMarker).
   */
  readonly markerSenders?: ReadonlyMap<string, string>;
}

/** The product's check: a valid signature by the set's registered owner, and the host's role where one is assigned. */
export class SignedOwnership implements OwnershipCheck {
  readonly #store: TargetStore;
  readonly #now: () => Date;
  readonly #setRoles: ReadonlyMap<string, string>;
  readonly #markerSenders: ReadonlyMap<string, string> | undefined;

  constructor(store: TargetStore, options: SignedOwnershipOptions = {}) {
    this.#store = store;
    this.#now = options.now ?? (() => new Date());
    this.#setRoles = options.setRoles ?? new Map();
    this.#markerSenders = options.markerSenders;
  }

  /**
   * With `tidemark:markerSenders`, a queue marker is taken only from the role of the host that owns the set (if the
   * stack gives it one) or from a listed sender; anyone else (another host's role, the shared agent role or user, any
   * other principal, a sender the queue did not name) is refused. Without it, the looser default: with host roles, a
   * set's marker is taken from its role or from any sender that is no host's role; without host roles, from everyone.
   */
  checkMarker(set: string, origin: MessageOrigin): Refusal | undefined {
    const role = this.#setRoles.get(set);
    if (this.#markerSenders) return this.#checkListedMarker(set, origin, role, this.#markerSenders);
    if (role === undefined) return undefined;
    const sender = origin.senderId || undefined;
    const reason = (why: string) => `a marker sent straight to the queue ${why}; a set's markers come from the role of the host that owns set "${set}" (${role}) or from a sender that is no host's role (an operator)`;
    if (sender === undefined) return { reason: reason("names no sender") };
    const senderRole = roleIdOf(sender);
    if (senderRole === role || ![...this.#setRoles.values()].includes(senderRole)) return undefined;
    return { reason: reason(`was sent by ${sender}, the role of another host`), sender };
  }

  #checkListedMarker(set: string, origin: MessageOrigin, role: string | undefined, listed: ReadonlyMap<string, string>): Refusal | undefined {
    const sender = origin.senderId || undefined;
    const senderId = sender === undefined ? undefined : roleIdOf(sender);
    if (senderId !== undefined && (senderId === role || listed.has(senderId))) return undefined;
    const names = [...listed].map(([id, arn]) => `${arn} (${id})`);
    const senders = names.length === 0 ? "a sender the stack's tidemark:markerSenders lists (it lists none)" : `one of the stack's tidemark:markerSenders (${names.join(", ")})`;
    if (sender === undefined || senderId === undefined) {
      const allowed = role === undefined ? senders : `the role of the host that owns set "${set}" (${role}) or ${senders}`;
      return { reason: `a marker sent straight to the queue names no sender; set "${set}" takes such markers only from ${allowed}` };
    }
    const otherHost = [...this.#setRoles.values()].includes(senderId) ? ", the role of another host" : "";
    const which = role === undefined ? `which is not ${senders}` : `which is neither the role of the host that owns set "${set}" (${role}) nor ${senders}`;
    return { reason: `a marker sent straight to the queue was sent by ${sender}${otherHost}, ${which}`, sender };
  }

  async unreadable(set: string, origin: MessageOrigin, error: string, owners?: OwnerReads, hasHistory = false): Promise<Refusal | undefined> {
    const sender = origin.senderId || undefined;
    const refuse = (why: string, keyId?: string): Refusal => ({
      reason: `an unreadable message ${why}, so not counted as the owner's (nothing of the owner's was lost): ${error}`,
      ...(keyId ? { keyId } : {}),
      ...(sender ? { sender } : {}),
    });
    const role = this.#setRoles.get(set);
    if (role !== undefined && (sender === undefined || roleIdOf(sender) !== role)) return refuse(`sent by ${sender ?? "an unknown sender"}, not by the role of the host that owns set "${set}" (${role})`);
    const value = origin.attributes?.[SIGNATURE_ATTRIBUTE];
    if (value === undefined) return refuse("without a signature");
    let signature: ParsedSignature;
    try {
      signature = parseSignature(value);
    } catch (e) {
      if (e instanceof BadSignatureError) return refuse(`with a bad signature (${e.message})`);
      throw e;
    }
    if (!signatureValid(signature, set, origin.body)) return refuse(`whose signature by key ${signature.keyId} does not match it`, signature.keyId);
    let owner: OwnerRecord | undefined;
    try {
      owner = await (owners ? owners.owner(set, () => readOwner(this.#store, set)) : readOwner(this.#store, set));
    } catch (e) {
      // No owner to tell it by: counted as the set's own, so it is not hidden among others' refusals.
      if (e instanceof OwnerRecordError) return undefined;
      throw e;
    }
    // With no owner registered yet, a validly signed message is its would-be owner's; but a set with history and no
    // owner is no one's to speak for by sending first (as check() refuses its records).
    if (!owner) return hasHistory ? refuse(`signed by key ${signature.keyId}, but set "${set}" has history on the target and no registered owner`, signature.keyId) : undefined;
    if (owner.publicKey === signature.publicKey) return undefined;
    return refuse(`signed by key ${signature.keyId}, not by the set's owner ${owner.keyId}`, signature.keyId);
  }

  async check(set: string, origin: MessageOrigin, status: SetStatus, owners?: OwnerReads): Promise<Refusal | Acceptance> {
    const sender = origin.senderId || undefined;
    const refuse = (reason: string, keyId?: string): Refusal => ({ reason, ...(keyId ? { keyId } : {}), ...(sender ? { sender } : {}) });
    const role = this.#setRoles.get(set);
    if (role !== undefined && (sender === undefined || roleIdOf(sender) !== role)) {
      return refuse(`sent by ${sender ?? "an unknown sender"}, not by the role of the host that owns set "${set}" (${role})`);
    }
    const value = origin.attributes?.[SIGNATURE_ATTRIBUTE];
    if (value === undefined) return refuse(`unsigned: a message that changes set "${set}" must carry its owner's signature (${SIGNATURE_ATTRIBUTE})`);
    let signature: ParsedSignature;
    try {
      signature = parseSignature(value);
    } catch (error) {
      if (error instanceof BadSignatureError) return refuse(error.message);
      throw error;
    }
    if (!signatureValid(signature, set, origin.body)) return refuse(`the signature by key ${signature.keyId} does not match the message`, signature.keyId);
    let owner: OwnerRecord | undefined;
    try {
      owner = await (owners ? owners.owner(set, () => readOwner(this.#store, set)) : readOwner(this.#store, set));
    } catch (error) {
      // Fail closed: an owner record no one can read accepts no one.
      if (error instanceof OwnerRecordError) return refuse(`${error.message}; an operator registers the owner again with \`tidemark adopt\``, signature.keyId);
      throw error;
    }
    if (owner) {
      if (owner.publicKey === signature.publicKey) return acceptanceBy(owner);
      return refuse(`signed by key ${signature.keyId}, but set "${set}" belongs to key ${owner.keyId} (moving a set to another host is \`tidemark adopt\`)`, signature.keyId);
    }
    if (status.lastSeq > 0) {
      // A set with history and no owner (replicated before owners were registered): no one claims it by sending first.
      return refuse(`set "${set}" has history on the target but no registered owner; an operator registers it with \`tidemark adopt ${set}\` on the owning host`, signature.keyId);
    }
    const first: OwnerRecord = { set, keyId: signature.keyId, publicKey: signature.publicKey, since: this.#now().toISOString(), how: "first-use", previous: [] };
    await writeOwner(this.#store, first);
    owners?.wrote(first);
    return { accepted: true };
  }
}

/**
 * The owner's messages may change the set; an adopted owner's records count from its adoption on. A `since` that does
 * not parse bounds nothing (the record times' other bounds still hold) rather than stop the set.
 */
function acceptanceBy(owner: OwnerRecord): Acceptance {
  const since = owner.how === "adopt" ? Date.parse(owner.since) : Number.NaN;
  return Number.isFinite(since) ? { accepted: true, ownerSince: since } : { accepted: true };
}
