// The local cloud's parts on their own: the emulator with the target's
// resources (the poller's event source mapping semantics for FIFO are in
// queue-consumer-contract.test.ts).

import { existsSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { CreateQueueCommand, GetQueueAttributesCommand, ReceiveMessageCommand, SendMessageCommand } from "@aws-sdk/client-sqs";
import { describe, expect, it } from "vitest";
import { deadLetterQueueAttributes, replicationQueueAttributes } from "../../contract/queue.ts";
import { makeSqsClient } from "../../lambdas/aws-clients.ts";
import { ensureTargetResources, PortInUseError, startEmulator } from "../../lambdas/local/emulator.ts";
import { tempDir } from "../support/tree.ts";

const REGION = "us-east-1";

/** Ports this process listens on at every address (0.0.0.0 or ::), from the kernel's socket tables and its open sockets. */
function portsOnEveryAddress(): Set<number> {
  const mine = new Set(
    readdirSync("/proc/self/fd").flatMap((fd) => {
      try {
        return [/^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1] ?? ""];
      } catch {
        return []; // closed meanwhile
      }
    }),
  );
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    if (!existsSync(table)) continue;
    for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [, local, , state] = fields;
      // 0A: LISTEN. An address of only zeros is every address.
      if (state !== "0A" || !local || !mine.has(fields[9] ?? "")) continue;
      const [address, port] = local.split(":");
      if (address && /^0+$/.test(address) && port) ports.add(Number.parseInt(port, 16));
    }
  }
  return ports;
}

describe("local emulator", () => {
  it("creates the FIFO queue, its FIFO DLQ and the bucket, and finds them again", async () => {
    const emulator = await startEmulator({ port: 0 });
    const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
    try {
      const first = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, maxReceiveCount: 3 });
      const again = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION, maxReceiveCount: 3 });
      expect(again).toEqual(first);
      expect(first.queueUrl).toBe(`${emulator.endpoint}/000000000000/tidemark.fifo`);
      const attributes = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: first.queueUrl, AttributeNames: ["All"] }))).Attributes ?? {};
      expect(attributes.FifoQueue).toBe("true");
      const redrive = JSON.parse(attributes.RedrivePolicy ?? "{}") as { deadLetterTargetArn?: string; maxReceiveCount?: number | string };
      expect(redrive.deadLetterTargetArn).toMatch(/tidemark-dlq\.fifo$/);
      expect(Number(redrive.maxReceiveCount)).toBe(3);
      const dlq = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: first.dlqUrl, AttributeNames: ["All"] }))).Attributes;
      expect(dlq?.FifoQueue).toBe("true");
      // The stack's definition, shared (contract/queue.ts; test/infra/stack.test.ts holds the template to it).
      const { RedrivePolicy, ...shared } = replicationQueueAttributes({ visibilityTimeoutSeconds: 30, deadLetterTargetArn: redrive.deadLetterTargetArn ?? "", maxReceiveCount: 3 });
      expect(attributes).toMatchObject(shared);
      expect(JSON.parse(RedrivePolicy ?? "{}")).toEqual({ ...redrive, maxReceiveCount: Number(redrive.maxReceiveCount) });
      expect(dlq).toMatchObject(deadLetterQueueAttributes());
    } finally {
      sqs.destroy();
      await emulator.stop();
    }
  });

  it.runIf(existsSync("/proc/net/tcp"))("listens on 127.0.0.1 only, versioned or not (it takes any credentials)", async () => {
    const before = portsOnEveryAddress();
    const plain = await startEmulator({ port: 0 });
    const versioned = await startEmulator({ port: 0, versioned: true });
    try {
      const opened = [...portsOnEveryAddress()].filter((port) => !before.has(port));
      expect(opened).toEqual([]);
    } finally {
      await versioned.stop();
      await plain.stop();
    }
  });

  it("refuses a port that is taken, saying so", async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      await expect(startEmulator({ port })).rejects.toThrow(PortInUseError);
      await expect(startEmulator({ port })).rejects.toThrow(`port ${port} on 127.0.0.1 is already in use`);
    } finally {
      blocker.close();
    }
  });

  it("takes a marker sent as the README shows, without a deduplication id, on a queue kept from before content-based deduplication", async () => {
    const emulator = await startEmulator({ port: 0 });
    const sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
    try {
      // The local queue of an earlier release: FIFO without content-based deduplication refuses such a send.
      const earlier = await sqs.send(new CreateQueueCommand({ QueueName: "tidemark.fifo", Attributes: { FifoQueue: "true" } }));
      const marker = JSON.stringify({ v: 1, set: "db", task: { id: "before-upgrade-1", action: "snapshot" } });
      await expect(sqs.send(new SendMessageCommand({ QueueUrl: earlier.QueueUrl, MessageGroupId: "db", MessageBody: marker }))).rejects.toThrow(/ContentBasedDeduplication/);

      const target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION });
      const attributes = (await sqs.send(new GetQueueAttributesCommand({ QueueUrl: target.queueUrl, AttributeNames: ["ContentBasedDeduplication"] }))).Attributes;
      expect(attributes?.ContentBasedDeduplication).toBe("true");
      await sqs.send(new SendMessageCommand({ QueueUrl: target.queueUrl, MessageGroupId: "db", MessageBody: marker }));
      // The same body again within the window is the same message, as on AWS.
      await sqs.send(new SendMessageCommand({ QueueUrl: target.queueUrl, MessageGroupId: "db", MessageBody: marker }));
      const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: target.queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 1 }));
      expect(out.Messages?.map((m) => m.Body)).toEqual([marker]);
    } finally {
      sqs.destroy();
      await emulator.stop();
    }
  });

  it("keeps queued messages across a restart on the same data dir", async () => {
    const dir = tempDir();
    let emulator = await startEmulator({ port: 0, dataDir: dir.path });
    try {
      let target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION });
      let sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
      await sqs.send(new SendMessageCommand({ QueueUrl: target.queueUrl, MessageGroupId: "g", MessageDeduplicationId: "d1", MessageBody: "kept" }));
      sqs.destroy();
      await emulator.stop();

      emulator = await startEmulator({ port: 0, dataDir: dir.path });
      target = await ensureTargetResources({ endpoint: emulator.endpoint, region: REGION });
      sqs = makeSqsClient({ region: REGION, endpoint: emulator.endpoint });
      const out = await sqs.send(new ReceiveMessageCommand({ QueueUrl: target.queueUrl, WaitTimeSeconds: 1 }));
      expect(out.Messages?.map((m) => m.Body)).toEqual(["kept"]);
      sqs.destroy();
    } finally {
      await emulator.stop();
      dir.remove();
    }
  });
});
