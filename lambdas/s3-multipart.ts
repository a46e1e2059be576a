// Objects too large for one PUT go up in parts: S3 takes at most 5 GiB in one
// request, the local emulator about 11 MiB. Used by the agent (staging) and
// the applier (rebuilt delta objects). Likewise CopyObject copies at most
// 5 GiB: larger objects are copied server-side part by part.

import { createHash } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { WriteResult } from "./store/store.ts";

/** Bodies above this are uploaded in parts. */
export const MULTIPART_THRESHOLD = 8 * 1024 * 1024;
/** S3 allows 10,000 parts of at least 5 MiB; parts grow past 8 MiB only for objects over 80 GB. */
const MAX_PARTS = 10_000;

export function partSize(size: number): number {
  return Math.max(MULTIPART_THRESHOLD, Math.ceil(size / MAX_PARTS));
}

export interface PartedUpload {
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
  readonly metadata: Record<string, string>;
  /** The bytes at [offset, offset + length); a few parts are read at once (PARTS_IN_FLIGHT), each once, started in order. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /** Called with the SHA-256 (hex) of every byte uploaded, before the upload completes: throwing aborts it. */
  beforeComplete?(sha256: string): void;
  /** Parts that hold the same bytes at the same offset in another object are copied from it server-side (still read, for the SHA-256). */
  readonly copy?: PartCopies;
  /** Called with a part's length once S3 holds it (uploaded or copied): how far the upload got. */
  stored?(length: number): void;
}

export interface PartCopies {
  /** The object copied from, as CopyObject takes it: URL-encoded "bucket/key". */
  readonly copySource: string;
  /** True when the bytes at [offset, offset + length) are the copy source's at the same offset. */
  untouched(offset: number, length: number): boolean;
}

/** S3's SHA-256 of a copied part is not that of the bytes read for it: the source changed in between. */
export class CopiedPartMismatchError extends Error {
  override name = "CopiedPartMismatchError";
}

/** What CompleteMultipartUpload made: the new object's version (an unversioned bucket's "null" left out) and ETag. */
function completed(out: { VersionId?: string; ETag?: string }): WriteResult {
  return { ...(out.VersionId && out.VersionId !== "null" ? { versionId: out.VersionId } : {}), ...(out.ETag ? { etag: out.ETag } : {}) };
}

/** Parts read ahead and uploaded at once: a streamed upload holds at most this many parts (8 MiB each below 80 GB). */
export const PARTS_IN_FLIGHT = 4;

type UploadedPart = { PartNumber: number; ETag: string | undefined; ChecksumSHA256?: string };

/**
 * A part's SHA-256 is computed once: S3 checks it as the part's checksum, and
 * the request's signature covers it as the payload hash (x-amz-content-sha256,
 * which S3 also checks); the SDK would otherwise hash every body again to sign it.
 */
function signedWithPayloadHash(command: UploadPartCommand, sha256Hex: string): UploadPartCommand {
  command.middlewareStack.add(
    (next) => async (args) => {
      const { request } = args;
      if (typeof request === "object" && request !== null && "headers" in request && typeof request.headers === "object" && request.headers !== null) {
        Object.assign(request.headers, { "x-amz-content-sha256": sha256Hex });
      }
      return next(args);
    },
    { step: "build", name: "tidemarkPartPayloadHash" },
  );
  return command;
}

/**
 * A multipart upload, each part checked by S3 against its SHA-256; aborted (no
 * part left behind) when one fails. Up to PARTS_IN_FLIGHT parts are read and
 * uploaded at once (reads start in order, each range once), so reading, hashing
 * and uploading overlap while memory stays at a few parts; the whole object's
 * SHA-256 takes the parts in order.
 */
export async function putInParts(s3: S3Client, upload: PartedUpload): Promise<WriteResult> {
  const { bucket, key } = upload;
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ChecksumAlgorithm: "SHA256", Metadata: upload.metadata }));
  if (!UploadId) throw new Error(`S3 returned no upload id for ${key}`);
  const running = new Set<Promise<void>>();
  // The first failure of any part (its read, hash or upload): nothing is read or uploaded after it.
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown) => {
    failure ??= { error };
  };
  const stopped = () => {
    if (failure) throw failure.error;
  };
  try {
    const size = partSize(upload.size);
    const parts: UploadedPart[] = [];
    const whole = createHash("sha256");
    // Cleared when the store does not report a copied part's SHA-256: the rest goes up as bytes.
    let copy = upload.copy;
    // The first part copy shows whether the store proves its copies: the parts copied after it wait for that answer.
    let firstCopy: Promise<void> | undefined;
    const copied = async (number: number, offset: number, length: number, sha256: string): Promise<UploadedPart | undefined> => {
      if (!copy?.untouched(offset, length)) return undefined;
      if (firstCopy) await firstCopy;
      if (!copy) return undefined;
      stopped();
      const attempt = copyPart(s3, { bucket, key, UploadId, number, offset, length, sha256, copySource: copy.copySource });
      firstCopy ??= attempt.then(
        () => undefined,
        () => undefined,
      );
      const part = await attempt;
      if (!part) copy = undefined;
      return part;
    };
    let hashedBefore: Promise<void> = Promise.resolve();
    const store = async (number: number, offset: number, body: Uint8Array): Promise<void> => {
      stopped();
      const digest = createHash("sha256").update(body).digest();
      const copy = await copied(number, offset, body.length, digest.toString("base64"));
      if (copy) {
        parts.push(copy);
        upload.stored?.(body.length);
        return;
      }
      stopped();
      const checksum = digest.toString("base64");
      const part = await s3.send(signedWithPayloadHash(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: number, Body: body, ChecksumSHA256: checksum }), digest.toString("hex")));
      parts.push({ PartNumber: number, ETag: part.ETag, ChecksumSHA256: part.ChecksumSHA256 ?? checksum });
      upload.stored?.(body.length);
    };
    for (let offset = 0, number = 1; offset < upload.size; offset += size, number++) {
      if (running.size >= PARTS_IN_FLIGHT) await Promise.race(running);
      stopped();
      const read = upload.read(offset, Math.min(size, upload.size - offset));
      // Known at once, though its part's task reports it only once the parts before it are hashed.
      read.catch(fail);
      const hashed = hashedBefore.then(async () => {
        whole.update(await read);
      });
      hashedBefore = hashed;
      const task = hashed.then(async () => store(number, offset, await read));
      running.add(task);
      task.then(() => running.delete(task), fail);
    }
    await Promise.all(running);
    upload.beforeComplete?.(whole.digest("hex"));
    parts.sort((a, b) => a.PartNumber - b.PartNumber);
    return completed(await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } })));
  } catch (error) {
    // No part may land after the abort: the parts still in flight settle first.
    await Promise.allSettled(running);
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
    throw error;
  }
}

/**
 * Part `number` copied server-side from the same range of the copy source.
 * S3 computes the copied bytes' SHA-256 (the upload names the algorithm):
 * it must be that of the bytes read for the whole object's SHA-256, so the
 * check still covers the bytes stored. Undefined when the store reports
 * none: it has not proven what it copied, and the caller uploads the bytes.
 */
async function copyPart(
  s3: S3Client,
  part: { bucket: string; key: string; UploadId: string; number: number; offset: number; length: number; sha256: string; copySource: string },
): Promise<UploadedPart | undefined> {
  const out = await s3.send(
    new UploadPartCopyCommand({
      Bucket: part.bucket,
      Key: part.key,
      UploadId: part.UploadId,
      PartNumber: part.number,
      CopySource: part.copySource,
      CopySourceRange: `bytes=${part.offset}-${part.offset + part.length - 1}`,
    }),
  );
  const reported = out.CopyPartResult?.ChecksumSHA256;
  if (reported === undefined) return undefined;
  if (reported !== part.sha256) {
    throw new CopiedPartMismatchError(`part ${part.number} of ${part.key} copied from ${part.copySource} is not the bytes read for it: the source changed during the copy`);
  }
  return { PartNumber: part.number, ETag: out.CopyPartResult?.ETag, ChecksumSHA256: reported };
}

/** Bytes per part of a server-side copy: S3 takes up to 5 GiB a part; big parts mean few requests. */
export const COPY_PART_BYTES = 512 * 1024 * 1024;

/** S3's answer to a CopyObject whose source is over 5 GiB (400 InvalidRequest); the copy must go in parts. */
export function isCopySourceTooLarge(error: unknown): boolean {
  return error instanceof Error && error.name === "InvalidRequest" && /larger than the maximum allowable size for a copy source/i.test(error.message);
}

export interface PartedCopy {
  readonly bucket: string;
  readonly key: string;
  /** The source as CopyObject takes it: URL-encoded "bucket/key". */
  readonly copySource: string;
  readonly size: number;
  /** The source's ETag: every part copies from that version of it, or fails. */
  readonly etag?: string;
  readonly metadata: Record<string, string>;
  readonly partBytes?: number;
}

/** A server-side copy by UploadPartCopy, range by range; aborted (no part left behind) when one fails. */
export async function copyInParts(s3: S3Client, copy: PartedCopy): Promise<WriteResult> {
  const { bucket, key } = copy;
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, Metadata: copy.metadata }));
  if (!UploadId) throw new Error(`S3 returned no upload id for ${key}`);
  try {
    const size = Math.max(copy.partBytes ?? COPY_PART_BYTES, Math.ceil(copy.size / MAX_PARTS));
    const parts: { PartNumber: number; ETag: string | undefined }[] = [];
    for (let offset = 0, number = 1; offset < copy.size; offset += size, number++) {
      const last = Math.min(offset + size, copy.size) - 1;
      const part = await s3.send(
        new UploadPartCopyCommand({
          Bucket: bucket,
          Key: key,
          UploadId,
          PartNumber: number,
          CopySource: copy.copySource,
          CopySourceRange: `bytes=${offset}-${last}`,
          ...(copy.etag ? { CopySourceIfMatch: copy.etag } : {}),
        }),
      );
      parts.push({ PartNumber: number, ETag: part.CopyPartResult?.ETag });
    }
    return completed(await s3.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } })));
  } catch (error) {
    await s3.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
    throw error;
  }
}
