import { createHash, randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ReceiveMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AwsTransport } from "../../agent/transport/aws.ts";
import { MULTIPART_THRESHOLD } from "../../lambdas/s3-multipart.ts";
import { isRetryable } from "../../agent/transport/retry.ts";
import { META } from "../../contract/layout.ts";
import { makeS3Client, makeSqsClient } from "../../lambdas/aws-clients.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { tempDir } from "../support/tree.ts";

describe("AWS transport on the emulator", () => {
  let emulator: Awaited<ReturnType<typeof startTestEmulator>>;
  let transport: AwsTransport;
  let store: S3Store;
  let queueUrl: string;
  const sqs = () => makeSqsClient({ region: "us-east-1", endpoint: emulator.endpoint });

  beforeAll(async () => {
    emulator = await startTestEmulator();
    const bucket = emulator.newBucket();
    queueUrl = emulator.server.createQueue("t.fifo", { attributes: { FifoQueue: "true" } }).queueUrl;
    const s3 = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint });
    store = new S3Store(s3, bucket);
    transport = new AwsTransport({ sqs: sqs(), s3, queueUrl, bucket });
  });
  afterAll(async () => {
    await emulator.server.stop();
  });

  it("sends into the set's message group with the deduplication id, once per id", async () => {
    await transport.send("docs", "docs:1-3", '{"first":true}');
    await transport.send("docs", "docs:1-3", '{"first":true}');
    await transport.send("docs", "docs:4-4", '{"second":true}');
    const out = await sqs().send(
      new ReceiveMessageCommand({ QueueUrl: queueUrl, MaxNumberOfMessages: 10, MessageSystemAttributeNames: ["All"], WaitTimeSeconds: 1 }),
    );
    const seen = (out.Messages ?? []).map((m) => [m.Body, m.Attributes?.MessageGroupId, m.Attributes?.MessageDeduplicationId]);
    expect(seen[0]).toEqual(['{"first":true}', "docs", "docs:1-3"]);
    expect(seen.filter(([body]) => body === '{"first":true}')).toHaveLength(1);
  });

  it("stages bytes and files under their key with the sha256 as metadata", async () => {
    const dir = tempDir();
    try {
      const bytes = Buffer.from("staged payload");
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      await transport.stage({ set: "docs", key: "staging/docs/1.x", sha256, size: bytes.length, source: { bytes } });
      writeFileSync(join(dir.path, "f"), bytes);
      await transport.stage({ set: "docs", key: "staging/docs/2.x", sha256, size: bytes.length, source: { file: join(dir.path, "f") } });
      for (const key of ["staging/docs/1.x", "staging/docs/2.x"]) {
        const object = await store.get(key);
        expect(object?.body.equals(bytes)).toBe(true);
        expect(object?.meta[META.sha256]).toBe(sha256);
      }
    } finally {
      dir.remove();
    }
  });

  it("stages payloads larger than one request in parts, from a file and from memory", async () => {
    const dir = tempDir();
    try {
      const big = randomBytes(2 * MULTIPART_THRESHOLD + 12345);
      const file = join(dir.path, "spooled");
      writeFileSync(file, big);
      const sha = createHash("sha256").update(big).digest("hex");
      await transport.stage({ set: "docs", key: "staging/docs/9.big", sha256: sha, size: big.length, source: { file } });
      await transport.stage({ set: "docs", key: "staging/docs/10.big", sha256: sha, size: big.length, source: { bytes: big } });
      for (const key of ["staging/docs/9.big", "staging/docs/10.big"]) {
        const object = await store.get(key);
        expect(object?.body.equals(big)).toBe(true);
        expect(object?.meta[META.sha256]).toBe(sha);
      }
    } finally {
      dir.remove();
    }
  });

  it("reports a refused connection as retryable", async () => {
    const dead = new AwsTransport({
      sqs: makeSqsClient({ region: "us-east-1", endpoint: "http://127.0.0.1:9", maxAttempts: 1 }),
      s3: makeS3Client({ region: "us-east-1", endpoint: "http://127.0.0.1:9", maxAttempts: 1 }),
      queueUrl: "http://127.0.0.1:9/000000000000/none.fifo",
      bucket: "none",
    });
    const error = await dead.send("docs", "x", "{}").catch((e: unknown) => e);
    expect(isRetryable(error)).toBe(true);
  });
});
