// The applier checks a message's staged objects (each read whole to check its
// SHA-256) several at a time, still reporting the first bad record in order
// and writing nothing for a bad message; the SDK's body is read as the Node
// stream it is.

import { createHash } from "node:crypto";
import { S3Client, type ServiceInputTypes, type ServiceOutputTypes } from "@aws-sdk/client-s3";
import type { InitializeMiddleware } from "@smithy/types";
import { describe, expect, it } from "vitest";
import { stagingKey } from "../../contract/layout.ts";
import type { PutRecord, WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { CHECKS_IN_FLIGHT } from "../../lambdas/applier/staged-content.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import type { ContentHash } from "../../lambdas/store/store.ts";
import { captureServerForTests } from "../support/capture-server.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";

function stagedPut(seq: number, path: string, text: string): PutRecord {
  const record = putRecord(seq, path, text);
  if (record.op !== "put") throw new Error("unreachable");
  return { ...record, content: { kind: "staged" } };
}

/** A store whose staged-content checks take a while (each its own delay), counting how many overlap. */
class SlowChecks extends MemoryStore {
  checking = 0;
  mostAtOnce = 0;
  started = 0;
  readonly delays = new Map<string, number>();
  override async contentSha256(key: string): Promise<ContentHash | undefined> {
    this.checking += 1;
    this.started += 1;
    this.mostAtOnce = Math.max(this.mostAtOnce, this.checking);
    await new Promise((resolve) => setTimeout(resolve, this.delays.get(key) ?? 5));
    this.checking -= 1;
    return super.contentSha256(key);
  }
}

async function deliver(store: MemoryStore, records: WireRecord[]) {
  const applier = new Applier({ store, log: () => {} });
  return applier.applyMessage(signedIncoming("m1", "docs", messageBody("docs", records)));
}

describe("a message's staged content checks", () => {
  it("run several at a time, and every file lands", async () => {
    const store = new SlowChecks();
    const records = Array.from({ length: 12 }, (_, i) => stagedPut(i + 1, `big-${i}.bin`, `content of file ${i}`));
    for (const [i, record] of records.entries()) await store.put(stagingKey("docs", record.seq, record.sha256), Buffer.from(`content of file ${i}`));
    const outcome = await deliver(store, records);
    expect(outcome).toMatchObject({ kind: "applied" });
    expect(store.mostAtOnce).toBeGreaterThan(1);
    expect(store.mostAtOnce).toBeLessThanOrEqual(CHECKS_IN_FLIGHT);
    for (const [i] of records.entries()) expect((await store.get(`data/docs/big-${i}.bin`))?.body.toString()).toBe(`content of file ${i}`);
  });

  it("report the first bad record in order, even when a later one fails first, and write nothing", async () => {
    const store = new SlowChecks();
    const first = stagedPut(1, "a.bin", "what the message says");
    const second = stagedPut(2, "b.bin", "also missing");
    // The first is there but holds other bytes, and takes longer to read; the second is missing (found at once).
    const firstKey = stagingKey("docs", 1, first.sha256);
    await store.put(firstKey, Buffer.from("something else entirely"));
    store.delays.set(firstKey, 30);
    store.delays.set(stagingKey("docs", 2, second.sha256), 0);
    const outcome = await deliver(store, [first, second, putRecord(3, "c.txt", "inline")]);
    expect(outcome).toMatchObject({ kind: "rejected" });
    expect((outcome as { error: string }).error).toMatch(/staged content of a\.bin \(seq 1\) is \d+ bytes/);
    expect([...store.objects.keys()].filter((key) => key.startsWith("data/"))).toEqual([]);
  });

  it("start no further check once one failed: the message is rejected, the rest is not read", async () => {
    const store = new SlowChecks();
    const records = Array.from({ length: 3 * CHECKS_IN_FLIGHT }, (_, i) => stagedPut(i + 1, `big-${i}.bin`, `content of file ${i}`));
    for (const [i, record] of records.entries()) if (i !== 1) await store.put(stagingKey("docs", record.seq, record.sha256), Buffer.from(`content of file ${i}`));
    // The second is missing and found so at once; the others take a while.
    for (const record of records) store.delays.set(stagingKey("docs", record.seq, record.sha256), record.seq === 2 ? 0 : 30);
    const outcome = await deliver(store, records);
    expect(outcome).toMatchObject({ kind: "rejected", error: expect.stringMatching(/big-1\.bin \(seq 2\) is missing/) });
    // Those started with it, and none after.
    expect(store.started).toBe(CHECKS_IN_FLIGHT);
  });
});

describe("S3Store reading an object's content to hash it", () => {
  const capture = captureServerForTests();

  it("reads the SDK's Node stream directly, not through a web stream adapter", async () => {
    const body = Buffer.alloc(3 * 1024 * 1024, 7);
    capture.server.responder = (_request, res) => {
      res.writeHead(200, { etag: '"e1"', "content-length": String(body.length) });
      res.end(body);
    };
    const client = new S3Client({ region: "eu-west-1", endpoint: capture.server.endpoint, forcePathStyle: true, credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxAttempts: 1 });
    let adapted = 0;
    // Counts uses of the SDK body's web stream adapter.
    const watch: InitializeMiddleware<ServiceInputTypes, ServiceOutputTypes> = (next) => async (args) => {
      const result = await next(args);
      const output: unknown = result.output;
      if (typeof output === "object" && output !== null && "Body" in output && typeof output.Body === "object" && output.Body !== null && "transformToWebStream" in output.Body) {
        const adapter = output.Body.transformToWebStream;
        if (typeof adapter === "function") {
          output.Body.transformToWebStream = (...args: unknown[]) => {
            adapted += 1;
            return Reflect.apply(adapter, output.Body, args);
          };
        }
      }
      return result;
    };
    client.middlewareStack.add(watch, { step: "initialize" });
    try {
      const store = new S3Store(client, "bucket");
      const sha256 = createHash("sha256").update(body).digest("hex");
      expect(await store.contentSha256("staging/docs/1.x")).toEqual({ sha256, size: body.length, etag: '"e1"' });
      expect(await store.hash("staging/docs/1.x")).toEqual({ sha256, size: body.length });
    } finally {
      client.destroy();
    }
    expect(adapted).toBe(0);
  });
});
