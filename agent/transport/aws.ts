// The transport to AWS (or the local emulator): messages to the SQS FIFO
// queue, large payloads to staging/ in the target bucket.

import { createReadStream } from "node:fs";
import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { META } from "../../contract/layout.ts";
import type { StagedPayload, Transport } from "./transport.ts";

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

  async send(set: string, deduplicationId: string, body: string): Promise<void> {
    await this.#sqs.send(
      new SendMessageCommand({
        QueueUrl: this.#queueUrl,
        MessageBody: body,
        MessageGroupId: set,
        MessageDeduplicationId: deduplicationId,
      }),
    );
  }
}
