// Messages the bench hands straight to the applier: records as the agent
// packs them, written by the contract's serializer and signed with a key of
// the bench's own, as the agent signs its messages.

import { createHash } from "node:crypto";
import type { SQSRecord } from "aws-lambda";
import { generateSigningKey, SIGNATURE_ATTRIBUTE, signMessage } from "../contract/signing.ts";
import { encodeInline, serializeMessage, WIRE_VERSION, type WireRecord } from "../contract/wire.ts";

/** The first message of a set signed with it makes the bench the set's owner. */
const BENCH_KEY = generateSigningKey();

/** A put of a small file whose content travels inline. */
export function inlinePut(seq: number, path: string, content: Buffer): WireRecord {
  return {
    seq,
    op: "put",
    path,
    size: content.length,
    mode: 0o644,
    mtimeNs: `${1_700_000_000_000_000_000n + BigInt(seq)}`,
    sha256: createHash("sha256").update(content).digest("hex"),
    content: encodeInline(content),
  };
}

export function messageBody(set: string, records: WireRecord[]): string {
  return serializeMessage({ v: WIRE_VERSION, set, records });
}

/** The messageAttributes of an SQS record (as Lambda hands it) carrying the bench's signature of body. */
export function signedSqsAttributes(set: string, body: string): SQSRecord["messageAttributes"] {
  return { [SIGNATURE_ATTRIBUTE]: { dataType: "String", stringValue: signMessage(BENCH_KEY, set, body), stringListValues: [], binaryListValues: [] } };
}
