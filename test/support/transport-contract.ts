// The Transport contract (agent/transport/transport.ts) with its FIFO queue
// behind it: every implementation, the in-memory fake included, passes the
// same suite. The agent's recovery relies on each rule: a message resent
// after a crash is dropped by its deduplication id, a set's messages arrive
// in the order they were sent, and staging a payload again is harmless.
// The deduplication scope (message group on the deployed queue, the whole
// queue on fauxqs) is left out: the agent's ids name their set
// (contract/wire.ts deduplicationId), so the two scopes drop the same messages.

import { createHash, randomUUID } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { DeleteMessageBatchCommand, ReceiveMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DeliveryRefusedError, type MessageAttributes, type Transport } from "../../agent/transport/transport.ts";
import { META } from "../../contract/layout.ts";
import type { TargetStore } from "../../lambdas/store/store.ts";
import { tempDir } from "./tree.ts";

/** A message as a consumer of the queue receives it. */
export interface ReceivedMessage {
  readonly group: string;
  readonly deduplicationId: string;
  readonly body: string;
  readonly attributes: MessageAttributes;
}

export interface TransportUnderTest {
  readonly transport: Transport;
  /** The store staged payloads land in. */
  readonly store: TargetStore;
  /** The next messages the queue hands a consumer, at least `count` of them (fewer when no more come), in the order handed out. */
  receive(count: number): Promise<ReceivedMessage[]>;
  close(): Promise<void>;
}

/** Receives from an SQS queue until `count` messages came or the queue stays empty past the deadline; deletes what it received. */
export async function receiveFromSqs(sqs: SQSClient, queueUrl: string, count: number, timeoutMs = 30_000): Promise<ReceivedMessage[]> {
  const received: ReceivedMessage[] = [];
  const deadline = Date.now() + timeoutMs;
  while (received.length < count && Date.now() < deadline) {
    const out = await sqs.send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1, MessageSystemAttributeNames: ["All"], MessageAttributeNames: ["All"] }),
    );
    const messages = out.Messages ?? [];
    for (const m of messages) {
      const attributes: Record<string, string> = {};
      for (const [name, value] of Object.entries(m.MessageAttributes ?? {})) if (value.StringValue !== undefined) attributes[name] = value.StringValue;
      received.push({ group: m.Attributes?.MessageGroupId ?? "", deduplicationId: m.Attributes?.MessageDeduplicationId ?? "", body: m.Body ?? "", attributes });
    }
    if (messages.length > 0) {
      await sqs.send(new DeleteMessageBatchCommand({ QueueUrl: queueUrl, Entries: messages.map((m, i) => ({ Id: String(i), ReceiptHandle: m.ReceiptHandle ?? "" })) }));
    }
  }
  return received;
}

/** A set name of its own per test: a queue that outlives a test (real AWS) never mixes two tests' groups. */
const uniqueSet = (stem: string) => `${stem}-${randomUUID().slice(0, 8)}`;

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

export function transportContract(name: string, make: () => Promise<TransportUnderTest>, skipReason?: string): void {
  describe.skipIf(skipReason !== undefined)(`Transport contract: ${name}${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
    let under: TransportUnderTest;
    beforeAll(async () => {
      under = await make();
    });
    afterAll(async () => {
      await under.close();
    });

    it("delivers one message per deduplication id, whatever the repeat's body: a resend after a crash is dropped", async () => {
      const set = uniqueSet("dedup");
      await under.transport.send(set, `${set}:1-3`, "records 1-3");
      await under.transport.send(set, `${set}:1-3`, "records 1-3");
      await under.transport.send(set, `${set}:1-3`, "records 1-3, packed again");
      await under.transport.send(set, `${set}:4-4`, "record 4");
      // In one group the queue keeps send order: a repeat let through would come before "record 4".
      const received = await under.receive(2);
      expect(received.map((m) => [m.group, m.deduplicationId, m.body])).toEqual([
        [set, `${set}:1-3`, "records 1-3"],
        [set, `${set}:4-4`, "record 4"],
      ]);
    });

    it("keeps each set's order with sets interleaved", async () => {
      const [a, b] = [uniqueSet("order-a"), uniqueSet("order-b")];
      for (let i = 1; i <= 6; i++) {
        await under.transport.send(a, `${a}:${i}`, `a${i}`);
        if (i % 2 === 0) await under.transport.send(b, `${b}:${i}`, `b${i}`);
      }
      const received = await under.receive(9);
      expect(received).toHaveLength(9);
      expect(received.filter((m) => m.group === a).map((m) => m.body)).toEqual(["a1", "a2", "a3", "a4", "a5", "a6"]);
      expect(received.filter((m) => m.group === b).map((m) => m.body)).toEqual(["b2", "b4", "b6"]);
    });

    it("hands on the message attributes", async () => {
      const set = uniqueSet("attributes");
      await under.transport.send(set, `${set}:1`, "with attributes", { "tidemark-test": "value one", "tidemark-other": "2" });
      const [received] = await under.receive(1);
      expect(received?.attributes).toMatchObject({ "tidemark-test": "value one", "tidemark-other": "2" });
    });

    it("stages a payload again under the same key without harm, from bytes and from a spooled file", async () => {
      const set = uniqueSet("stage");
      const bytes = Buffer.from("staged once, staged twice");
      const key = `staging/${set}/7.x`;
      const payload = { set, key, sha256: sha256(bytes), size: bytes.length };
      await under.transport.stage({ ...payload, source: { bytes } });
      await under.transport.stage({ ...payload, source: { bytes } });
      const dir = tempDir();
      try {
        const file = join(dir.path, "spool");
        writeFileSync(file, bytes);
        await under.transport.stage({ ...payload, source: { file } });
      } finally {
        dir.remove();
      }
      const object = await under.store.get(key);
      expect(object?.body.equals(bytes)).toBe(true);
      expect(object?.meta[META.sha256]).toBe(sha256(bytes));
      const listed: string[] = [];
      for await (const info of under.store.list(`staging/${set}/`)) listed.push(info.key);
      expect(listed).toEqual([key]);
    });

    it("refuses for good a payload whose spooled file is gone, and stores nothing", async () => {
      const set = uniqueSet("spool");
      const dir = tempDir();
      dir.remove();
      const key = `staging/${set}/1.x`;
      const error = await under.transport.stage({ set, key, sha256: sha256(Buffer.from("x")), size: 1, source: { file: join(dir.path, "gone") } }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(DeliveryRefusedError);
      expect(await under.store.head(key)).toBeUndefined();
    });
  });
}
