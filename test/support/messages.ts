// Builders for wire messages in tests.

import { createHash } from "node:crypto";
import { encodeInline, type WireMessage, type WireRecord } from "../../contract/wire.ts";

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
