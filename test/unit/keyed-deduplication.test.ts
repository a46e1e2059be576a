// Two hosts with one journal's numbering (a state folder copied before the
// copy got its own key) sent the same MessageDeduplicationId for different
// messages: the queue keeps the first and drops the other for five minutes,
// answering it as sent. The id carries the signing key's id: one host's resend
// still deduplicates, another host's message does not.

import { expect, it } from "vitest";
import { generateSigningKey } from "../../contract/signing.ts";
import { deduplicationId } from "../../contract/wire.ts";
import { SigningTransport, keyedDeduplicationId } from "../../agent/transport/signing.ts";
import type { Transport } from "../../agent/transport/transport.ts";

function recording(): { transport: Transport; ids: string[] } {
  const ids: string[] = [];
  const transport: Transport = {
    stage: async () => undefined,
    send: async (_set, id) => {
      ids.push(id);
    },
  };
  return { transport, ids };
}

it("gives two keys' messages of one seq range different deduplication ids, and one key's resend the same", async () => {
  const sent = recording();
  const one = new SigningTransport(sent.transport, generateSigningKey());
  const other = new SigningTransport(sent.transport, generateSigningKey());
  const id = deduplicationId("www", 10, 12, "0123456789abcdef");
  await one.send("www", id, "{}");
  await one.send("www", id, "{}");
  await other.send("www", id, "{}");
  expect(sent.ids[0]).toBe(sent.ids[1]);
  expect(sent.ids[2]).not.toBe(sent.ids[0]);
  expect(sent.ids[0]?.startsWith(`${id}:`)).toBe(true);
});

it("stays within SQS's 128 characters for the longest set names and seqs", () => {
  const id = deduplicationId("s".repeat(64), Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER, "0123456789abcdef");
  const keyed = keyedDeduplicationId(id, "fedcba9876543210");
  expect(keyed.length).toBeLessThanOrEqual(128);
  expect(keyed).toMatch(/^[0-9a-f]{64}$/);
  expect(keyedDeduplicationId(id, "0000000000000000")).not.toBe(keyed);
});
