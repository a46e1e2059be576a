// The transport to AWS (or the local emulator): messages to the SQS FIFO
// queue, large payloads to staging/ in the target bucket.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { SendMessageCommand, type SQSClient } from "@aws-sdk/client-sqs";
import { META } from "../../contract/layout.ts";
import type { StagedPayload, Transport } from "./transport.ts";

/**
 * Payloads above this go up in parts: S3 takes at most 5 GiB in one PUT, and
 * the local emulator about 11 MiB in one request.
 */
export const MULTIPART_THRESHOLD = 8 * 1024 * 1024;
/** S3 allows 10,000 parts of at least 5 MiB; parts grow past 8 MiB only for files over 80 GB. */
const MAX_PARTS = 10_000;

export function partSize(size: number): number {
  return Math.max(MULTIPART_THRESHOLD, Math.ceil(size / MAX_PARTS));
}

async function readPart(file: FileHandle | undefined, offset: number, length: number, key: string): Promise<Buffer> {
  if (!file) throw new Error(`no content to upload for ${key}`);
  const body = Buffer.alloc(length);
  const { bytesRead } = await file.read(body, 0, length, offset);
  if (bytesRead !== length) throw new Error(`the spooled content of ${key} is shorter than expected`);
  return body;
}

const sha256Base64 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("base64");

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

  /** A multipart upload, each part checked by S3 against its SHA-256; aborted (no part left behind) when a part fails. */
  async #stageInParts(payload: StagedPayload): Promise<void> {
    const { UploadId } = await this.#s3.send(
      new CreateMultipartUploadCommand({ Bucket: this.#bucket, Key: payload.key, ChecksumAlgorithm: "SHA256", Metadata: { [META.sha256]: payload.sha256 } }),
    );
    if (!UploadId) throw new Error(`no upload id for ${payload.key}`);
    const size = partSize(payload.size);
    const bytes = "bytes" in payload.source ? payload.source.bytes : undefined;
    const file = "file" in payload.source ? await open(payload.source.file, "r") : undefined;
    try {
      const parts: { PartNumber: number; ETag: string | undefined; ChecksumSHA256: string | undefined }[] = [];
      for (let offset = 0, number = 1; offset < payload.size; offset += size, number++) {
        const length = Math.min(size, payload.size - offset);
        const body = bytes ? bytes.subarray(offset, offset + length) : await readPart(file, offset, length, payload.key);
        const checksum = sha256Base64(body);
        const part = await this.#s3.send(
          new UploadPartCommand({ Bucket: this.#bucket, Key: payload.key, UploadId, PartNumber: number, Body: body, ChecksumSHA256: checksum }),
        );
        parts.push({ PartNumber: number, ETag: part.ETag, ChecksumSHA256: part.ChecksumSHA256 ?? checksum });
      }
      await this.#s3.send(new CompleteMultipartUploadCommand({ Bucket: this.#bucket, Key: payload.key, UploadId, MultipartUpload: { Parts: parts } }));
    } catch (error) {
      await this.#s3.send(new AbortMultipartUploadCommand({ Bucket: this.#bucket, Key: payload.key, UploadId })).catch(() => undefined);
      throw error;
    } finally {
      await file?.close();
    }
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
