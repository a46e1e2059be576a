// startLocalTarget on its own: what `tidemark local`, the tests' cloud and the
// bench get from it, and that stop() leaves nothing listening.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { expect, it } from "vitest";
import { SIGNATURE_ATTRIBUTE, signMessage } from "../../contract/signing.ts";
import type { BatchHandler } from "../../lambdas/applier/handler.ts";
import { LOCAL_EVENTS_FILE, localTaskSettings, type LocalEbs } from "../../lambdas/local/tasks.ts";
import { startLocalTarget } from "../../lambdas/local/target.ts";
import { readApplierAnnouncement } from "../../lambdas/target/readers.ts";
import { eventually } from "../support/local-cloud.ts";
import { messageBody, putRecord, TEST_KEY } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

async function listening(endpoint: string): Promise<boolean> {
  return fetch(endpoint).then(
    () => true,
    () => false,
  );
}

it("applies what reaches its queue, runs markers' actions with the EBS stand-in, and stops everything it started", async () => {
  const dir = tempDir();
  const applied: number[] = [];
  const metrics: string[] = [];
  let invocations = 0;
  let ebsGiven: LocalEbs | undefined;
  const target = await startLocalTarget({
    emulator: { port: 0 },
    ebs: { dir: join(dir.path, "ebs") },
    tasks: ({ ebs }) => {
      ebsGiven = ebs;
      return localTaskSettings(join(dir.path, LOCAL_EVENTS_FILE), ebs);
    },
    observer: { applied: (_set, record) => applied.push(record.seq) },
    metrics: (line) => metrics.push(line),
    wrapHandler: (handler): BatchHandler => (event, context) => {
      invocations += 1;
      return handler(event, context);
    },
    poller: { waitTimeSeconds: 1 },
  });
  try {
    expect(ebsGiven).toEqual({ store: target.store, ebsEndpoint: target.ebs.endpoint, region: target.region });
    // Announced as it starts, before any message: an agent's new sets may send whole packs from their first one.
    expect(await readApplierAnnouncement(target.store)).toMatchObject({ accepts: ["whole-packs"] });
    const send = async (body: string, id: string) => {
      await target.sqs.send(
        new SendMessageCommand({
          QueueUrl: target.queueUrl,
          MessageGroupId: "docs",
          MessageDeduplicationId: id,
          MessageBody: body,
          MessageAttributes: { [SIGNATURE_ATTRIBUTE]: { DataType: "String", StringValue: signMessage(TEST_KEY, "docs", body) } },
        }),
      );
    };
    await send(messageBody("docs", [putRecord(1, "a.txt", "hello")]), "1");
    await send(messageBody("docs", [{ seq: 2, op: "task", id: "20261130T010203Z-abc123", action: "event", timeoutSeconds: 0, label: "ping" }]), "2");
    await eventually(async () => expect(applied).toEqual([1, 2]), 30_000);
    expect((await target.store.get("data/docs/a.txt"))?.body.toString()).toBe("hello");
    // The event action wrote to the events file the task settings named.
    await eventually(async () => expect(readFileSync(join(dir.path, LOCAL_EVENTS_FILE), "utf8")).toContain("20261130T010203Z-abc123"), 30_000);
    expect(invocations).toBeGreaterThan(0);
    expect(metrics.some((line) => line.includes('"batch handled"'))).toBe(true);
  } finally {
    await target.stop();
  }
  expect(await listening(target.endpoint)).toBe(false);
  expect(await listening(target.ebs.endpoint)).toBe(false);
  dir.remove();
});

it("stops what it had started when a later step fails", async () => {
  const servers = () => process.getActiveResourcesInfo().filter((kind) => kind === "TCPServerWrap").length;
  const before = servers();
  // Nothing listens on the emulator endpoint: creating the queue fails after the EBS stand-in started listening.
  await expect(startLocalTarget({ emulator: { endpoint: "http://127.0.0.1:9" }, ebs: {} })).rejects.toThrow();
  // A closed server's handle goes on the next turn of the event loop.
  await eventually(async () => expect(servers()).toBe(before), 5_000, 20);
});
