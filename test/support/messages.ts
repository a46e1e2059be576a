// Builders for wire messages in tests.

import { createHash } from "node:crypto";
import { encodeInline, type WireMessage, type WireRecord } from "../../contract/wire.ts";
import { generateSigningKey, SIGNATURE_ATTRIBUTE, signMessage, type OwnerRecord, type SigningKey } from "../../contract/signing.ts";
import type { IncomingMessage } from "../../lambdas/applier/applier.ts";
import type { SQSRecord } from "aws-lambda";

export function putRecord(seq: number, path: string, text: string, mode = 0o644): WireRecord {
  const bytes = Buffer.from(text);
  return {
    seq,
    op: "put",
    path,
    size: bytes.length,
    mode,
    mtimeNs: `${1_700_000_000_000_000_000n + BigInt(seq)}`,
    sha256: createHash("sha256").update(bytes).digest("hex"),
    content: encodeInline(bytes),
  };
}

export function messageBody(set: string, records: WireRecord[]): string {
  const message: WireMessage = { v: 1, set, records };
  return JSON.stringify(message);
}

/** The key test messages are signed with: the first signed message of a set registers it as the set's owner. */
export const TEST_KEY = generateSigningKey();

/** A message as the queue hands it to the applier, signed by key (the test key unless given) as the agent signs it. */
export function signedIncoming(messageId: string, set: string, body: string, key: SigningKey = TEST_KEY, groupId: string = set): IncomingMessage {
  return { messageId, groupId, body, attributes: { [SIGNATURE_ATTRIBUTE]: signMessage(key, groupId, body) } };
}

/** The messageAttributes of an SQS record (as Lambda hands it) carrying the signature of body by key. */
export function signedSqsAttributes(set: string, body: string, key: SigningKey = TEST_KEY): SQSRecord["messageAttributes"] {
  return { [SIGNATURE_ATTRIBUTE]: { dataType: "String", stringValue: signMessage(key, set, body), stringListValues: [], binaryListValues: [] } };
}

/** The owner record that makes key (the test key unless given) the set's owner, as first use or `tidemark adopt` writes it. */
export function ownerRecordFor(set: string, key: SigningKey = TEST_KEY): OwnerRecord {
  return { set, keyId: key.keyId, publicKey: key.publicKey, since: new Date(0).toISOString(), how: "adopt", previous: [] };
}
