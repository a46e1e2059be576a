// Target store on S3 (or an S3-compatible emulator).

import {
  CopyObjectCommand,
  DeleteObjectCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import { copyInParts, isCopySourceTooLarge, MULTIPART_THRESHOLD, putInParts } from "../s3-multipart.ts";
import { encodeKeyPath } from "../s3-object-requests.ts";
import { bodyChunks } from "./body-chunks.ts";
import { ListingCheck } from "./listing-check.ts";
import { Readable } from "node:stream";
import {
  ContentMismatchError,
  givenSha256,
  ObjectNotFoundError,
  SourceChangedError,
  type ContentHash,
  type CopyOptions,
  type ObjectHead,
  type ObjectInfo,
  type ObjectStream,
  type PutOptions,
  type ReadStreamOptions,
  type StoredObject,
  type StreamedBody,
  type TargetStore,
  type WriteResult,
} from "./store.ts";

export function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === "NoSuchKey" || e?.name === "NotFound" || e?.$metadata?.httpStatusCode === 404;
}

/** S3 copy sources are URL-encoded "bucket/key". */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${encodeKeyPath(key)}`;
}

export function objectHead(key: string, size: number, meta: Record<string, string>, versionId: string | undefined, checksum: string | undefined): ObjectHead {
  // An unversioned bucket reports the version "null"; an object put in parts a checksum of its parts' ("...-N").
  const whole = checksum !== undefined && /^[A-Za-z0-9+/]{43}=$/.test(checksum) ? Buffer.from(checksum, "base64").toString("hex") : undefined;
  return { key, size, meta, ...(versionId && versionId !== "null" ? { versionId } : {}), ...(whole ? { checksumSha256: whole } : {}) };
}

/** A version and ETag from the SDK's answer; an unversioned bucket's version "null" left out. */
function written(versionId: string | undefined, etag: string | undefined): WriteResult {
  return { ...(versionId && versionId !== "null" ? { versionId } : {}), ...(etag ? { etag } : {}) };
}

export const checksumOf = (body: Uint8Array) => createHash("sha256").update(body).digest("base64");

/** A put's x-amz-checksum-sha256: the SHA-256 the caller computed (PutOptions.sha256, checked to be 64 lower-case hex digits), or the body's. */
export function putChecksum(body: Uint8Array, options: PutOptions): string {
  const given = givenSha256(options);
  return given !== undefined ? Buffer.from(given, "hex").toString("base64") : checksumOf(body);
}

export interface S3StoreOptions {
  /**
   * The store checks the SHA-256 sent with a write and keeps it (S3 does):
   * heads report it as checksumSha256. An emulator that records the writer's
   * claim unchecked must not be trusted with it.
   * @default false
   */
  readonly storeVerifiesChecksums?: boolean;
}


function isPreconditionFailed(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === "PreconditionFailed" || e?.$metadata?.httpStatusCode === 412;
}

/** The store on S3 through the SDK client: every request takes its configured handler (proxy, CA bundle, User-Agent, retries). */
export class S3Store implements TargetStore {
  readonly client: S3Client;
  readonly bucket: string;
  #versioning: Promise<boolean> | undefined;
  /** Heads report the SHA-256 the store kept (S3StoreOptions.storeVerifiesChecksums). */
  protected readonly checksumsVerified: boolean;

  constructor(client: S3Client, bucket: string, options: S3StoreOptions = {}) {
    this.client = client;
    this.bucket = bucket;
    this.checksumsVerified = options.storeVerifiesChecksums ?? false;
  }

  async get(key: string, versionId?: string): Promise<StoredObject | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}) }));
      const bytes = out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
      return { key, body: Buffer.from(bytes), meta: out.Metadata ?? {} };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async hash(key: string, versionId?: string): Promise<{ sha256: string; size: number } | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}) }));
      const hash = createHash("sha256");
      let size = 0;
      for await (const chunk of bodyChunks(out.Body)) {
        hash.update(chunk);
        size += chunk.length;
      }
      return { sha256: hash.digest("hex"), size };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async head(key: string): Promise<ObjectHead | undefined> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, ChecksumMode: "ENABLED" }));
      return objectHead(key, out.ContentLength ?? 0, out.Metadata ?? {}, out.VersionId, this.checksumsVerified ? out.ChecksumSHA256 : undefined);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async put(key: string, body: Uint8Array, meta: Record<string, string> = {}, options: PutOptions = {}): Promise<WriteResult> {
    if (body.length > MULTIPART_THRESHOLD) {
      // Each part is checked by S3; the whole body against the given SHA-256 here, before the upload completes.
      const given = givenSha256(options);
      const check = (sha256: string) => {
        if (given !== undefined && sha256 !== given) throw new ContentMismatchError(key, given, sha256);
      };
      return putInParts(this.client, { bucket: this.bucket, key, size: body.length, metadata: meta, read: async (offset, length) => body.subarray(offset, offset + length), beforeComplete: check });
    }
    // S3 checks the body against its SHA-256 and keeps it: a snapshot's verification reads it back with a HEAD.
    const checksum = putChecksum(body, options);
    const out = await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, Metadata: meta, ChecksumSHA256: checksum }));
    return written(out.VersionId, out.ETag);
  }

  async readStream(key: string, options: ReadStreamOptions = {}): Promise<ObjectStream | undefined> {
    const { versionId, offset, length, ifMatch } = options;
    const range = offset !== undefined && length !== undefined ? { Range: `bytes=${offset}-${offset + length - 1}` } : {};
    try {
      const out = await this.client.send(
        new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}), ...(ifMatch !== undefined ? { IfMatch: ifMatch } : {}), ...range }),
      );
      // A range's answer names the whole object's size after the slash of Content-Range.
      const total = /\/(\d+)$/.exec(out.ContentRange ?? "")?.[1];
      const body = out.Body;
      return {
        size: total !== undefined ? Number(total) : (out.ContentLength ?? 0),
        meta: out.Metadata ?? {},
        ...(out.VersionId && out.VersionId !== "null" ? { versionId: out.VersionId } : {}),
        ...(out.ETag ? { etag: out.ETag } : {}),
        body: bodyChunks(body),
        discard: () => {
          if (body instanceof Readable) body.destroy();
        },
      };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      if (ifMatch !== undefined && isPreconditionFailed(error)) throw new SourceChangedError(key, ifMatch, "nothing more was read");
      throw error;
    }
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer | undefined> {
    if (length <= 0) return Buffer.alloc(0);
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, Range: `bytes=${offset}-${offset + length - 1}` }));
      const bytes = out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
      // A view of the bytes read, not a copy: a delta rebuild reads its whole base this way.
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  /**
   * One PUT for a small body; else an upload in parts, each checked by S3 against its SHA-256 (the untouched ones of
   * body.copyFrom copied server-side), completed only when the whole body's matches.
   */
  async putStreamed(key: string, body: StreamedBody, meta: Record<string, string>): Promise<WriteResult> {
    const check = (sha256: string) => {
      if (sha256 !== body.sha256) throw new ContentMismatchError(key, body.sha256, sha256);
    };
    if (body.size <= MULTIPART_THRESHOLD) {
      const bytes = await body.read(0, body.size);
      check(createHash("sha256").update(bytes).digest("hex"));
      return this.put(key, bytes, meta);
    }
    const { copyFrom } = body;
    const copy = copyFrom ? { copy: { copySource: copySource(this.bucket, copyFrom.key), untouched: (offset: number, length: number) => copyFrom.untouched(offset, length) } } : {};
    return putInParts(this.client, { bucket: this.bucket, key, size: body.size, metadata: meta, read: (offset, length) => body.read(offset, length), beforeComplete: check, ...copy });
  }

  /** CopyObject, or for a source over 5 GiB (which S3 refuses to CopyObject) a copy in parts; with ifMatch, only of that version of the source. */
  async copy(from: string, to: string, meta: Record<string, string>, options: CopyOptions = {}): Promise<WriteResult> {
    try {
      const out = await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: to,
          CopySource: copySource(this.bucket, from),
          Metadata: meta,
          MetadataDirective: "REPLACE",
          ...(options.ifMatch !== undefined ? { CopySourceIfMatch: options.ifMatch } : {}),
          // S3 computes the copy's SHA-256 from the bytes it copies.
          ChecksumAlgorithm: "SHA256",
        }),
      );
      return written(out.VersionId, out.CopyObjectResult?.ETag);
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(from);
      if (options.ifMatch !== undefined && isPreconditionFailed(error)) throw new SourceChangedError(from, options.ifMatch);
      if (!isCopySourceTooLarge(error)) throw error;
      return this.#copyInParts(from, to, meta, options.ifMatch);
    }
  }

  async contentSha256(key: string): Promise<ContentHash | undefined> {
    try {
      if (this.checksumsVerified) {
        const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, ChecksumMode: "ENABLED" }));
        // A multipart object's checksum is of its parts' checksums (type COMPOSITE): only a whole object's one names its content.
        if (head.ChecksumSHA256 && head.ChecksumType !== "COMPOSITE" && !head.ChecksumSHA256.includes("-") && head.ETag) {
          return { sha256: Buffer.from(head.ChecksumSHA256, "base64").toString("hex"), size: head.ContentLength ?? 0, etag: head.ETag };
        }
      }
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      const hash = createHash("sha256");
      let size = 0;
      // Streamed: a staged object may be larger than the function's memory.
      for await (const chunk of bodyChunks(out.Body)) {
        hash.update(chunk);
        size += chunk.length;
      }
      if (!out.ETag) throw new Error(`S3 answered GetObject of ${key} without an ETag`);
      return { sha256: hash.digest("hex"), size, etag: out.ETag };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async #copyInParts(from: string, to: string, meta: Record<string, string>, ifMatch: string | undefined): Promise<WriteResult> {
    const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: from })).catch((error: unknown) => {
      throw isNotFound(error) ? new ObjectNotFoundError(from) : error;
    });
    // Each part is tied to the ETag copied: the version checked, when the caller names one.
    if (ifMatch !== undefined && head.ETag !== ifMatch) throw new SourceChangedError(from, ifMatch);
    return copyInParts(this.client, {
      bucket: this.bucket,
      key: to,
      copySource: copySource(this.bucket, from),
      size: head.ContentLength ?? 0,
      ...(head.ETag ? { etag: head.ETag } : {}),
      metadata: meta,
    });
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  /** Checks the listing as it goes (listing-check.ts): a store that lists out of order, repeats or skips a page fails it with BrokenListingError. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const check = new ListingCheck(this.bucket, prefix);
    let token: string | undefined;
    do {
      const out = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const object of out.Contents ?? []) {
        if (object.Key === undefined) continue;
        check.key(object.Key);
        yield {
          key: object.Key,
          size: object.Size ?? 0,
          ...(object.ETag ? { etag: object.ETag } : {}),
          ...(object.LastModified ? { lastModified: object.LastModified } : {}),
        };
      }
      token = check.nextPage(out.IsTruncated === true, out.NextContinuationToken);
    } while (token);
  }

  /** Asked once per store: a bucket's versioning is switched on or off rarely, by hand. */
  async versioned(): Promise<boolean> {
    this.#versioning ??= this.client
      .send(new GetBucketVersioningCommand({ Bucket: this.bucket }))
      .then((out) => out.Status === "Enabled")
      .catch((error: unknown) => {
        this.#versioning = undefined;
        // S3-compatible stores without versioning answer NotImplemented: they keep no versions.
        if ((error as { name?: string }).name === "NotImplemented" || (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 501) return false;
        throw error;
      });
    return this.#versioning;
  }
}
