// The transport to AWS (or the local emulator): messages to the SQS FIFO
// queue, large payloads to staging/ in the target bucket.

import { createReadStream } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { META } from "../../contract/layout.ts";
import { MULTIPART_THRESHOLD, putInParts } from "../../lambdas/target/index.ts";
import { messageBodyAsJson } from "./message-body.ts";
import { DeliveryRefusedError, type MessageAttributes, type StagedPayload, type Transport } from "./transport.ts";

async function readPart(file: FileHandle, offset: number, length: number, key: string): Promise<Buffer> {
  const body = Buffer.alloc(length);
  const { bytesRead } = await file.read(body, 0, length, offset);
  if (bytesRead !== length) throw new DeliveryRefusedError(`the spooled content of ${key} is shorter than expected`);
  return body;
}

/** A spool file that is gone or of another size can never be sent: its record is refused, not retried forever. */
async function checkSpool(payload: StagedPayload): Promise<void> {
  if (!("file" in payload.source)) return;
  const size = await stat(payload.source.file).then(
    (st) => st.size,
    (error: unknown) => {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    },
  );
  if (size === undefined) throw new DeliveryRefusedError(`the spooled content of ${payload.key} is gone (${payload.source.file})`);
  if (size !== payload.size) throw new DeliveryRefusedError(`the spooled content of ${payload.key} holds ${size} bytes, not ${payload.size}`);
}

export class AwsTransport implements Transport {
  readonly #sqs: SQSClient;
  readonly #s3: S3Client;
  readonly #queueUrl: string;
  readonly #bucket: string;

  constructor(options: { sqs: SQSClient; s3: S3Client; queueUrl: string; bucket: string }) {
    this.#sqs = options.sqs;
    this.#s3 = options.s3;
    this.#queueUrl = options.queueUrl;
    this.#bucket = options.bucket;
  }

  async stage(payload: StagedPayload): Promise<void> {
    await checkSpool(payload);
    if (payload.size > MULTIPART_THRESHOLD) return this.#stageInParts(payload);
    const body = "bytes" in payload.source ? payload.source.bytes : createReadStream(payload.source.file);
    await this.#s3.send(
      new PutObjectCommand({
        Bucket: this.#bucket,
        Key: payload.key,
        Body: body,
        ContentLength: payload.size,
        // S3 verifies the bytes against this on arrival; the applier trusts a staged object it finds.
        ChecksumSHA256: Buffer.from(payload.sha256, "hex").toString("base64"),
        Metadata: { [META.sha256]: payload.sha256 },
      }),
    );
  }

  async #stageInParts(payload: StagedPayload): Promise<void> {
    let stored = 0;
    const told = payload.progress;
    // What it is told is for status: a callback that throws must not fail the part (nor the upload, retried forever).
    const progress =
      told &&
      ((bytes: number) => {
        try {
          told(bytes);
        } catch {
          // Status only: see above.
        }
      });
    const upload = {
      bucket: this.#bucket,
      key: payload.key,
      size: payload.size,
      metadata: { [META.sha256]: payload.sha256 },
      ...(progress ? { stored: (length: number) => progress((stored += length)) } : {}),
    };
    const { source } = payload;
    // An attempt that fails is aborted: S3 keeps none of its parts.
    const failed = (error: unknown): never => {
      progress?.(0);
      throw error;
    };
    if ("bytes" in source) {
      await putInParts(this.#s3, { ...upload, read: async (offset, length) => source.bytes.subarray(offset, offset + length) }).catch(failed);
      return;
    }
    const file = await open(source.file, "r");
    try {
      await putInParts(this.#s3, { ...upload, read: (offset, length) => readPart(file, offset, length, payload.key) }).catch(failed);
    } finally {
      await file.close();
    }
  }

  async send(set: string, deduplicationId: string, body: string, attributes?: MessageAttributes): Promise<void> {
    const command = new SendMessageCommand({
      QueueUrl: this.#queueUrl,
      MessageBody: body,
      MessageGroupId: set,
      MessageDeduplicationId: deduplicationId,
      ...(attributes ? { MessageAttributes: Object.fromEntries(Object.entries(attributes).map(([name, value]) => [name, { DataType: "String", StringValue: value }])) } : {}),
    });
    command.middlewareStack.use(messageBodyAsJson);
    await this.#sqs.send(command);
  }
}
