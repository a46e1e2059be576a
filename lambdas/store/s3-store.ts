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
import { copyInParts, isCopySourceTooLarge, MULTIPART_THRESHOLD, putInParts } from "../s3-multipart.ts";
import { sharedUntilFailure } from "../../contract/async.ts";
import { encodeKeyPath, metadataOf, S3ObjectRequests, type ObjectRequestOptions } from "../s3-object-requests.ts";
import { ListingCheck } from "./listing-check.ts";
import { ObjectNotFoundError, type ObjectHead, type ObjectInfo, type StoredObject, type TargetStore } from "./store.ts";

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === "NoSuchKey" || e?.name === "NotFound" || e?.$metadata?.httpStatusCode === 404;
}

/** S3 copy sources are URL-encoded "bucket/key". */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${encodeKeyPath(key)}`;
}

function objectHead(key: string, size: number, meta: Record<string, string>, versionId: string | undefined): ObjectHead {
  // An unversioned bucket reports the version "null".
  return { key, size, meta, ...(versionId && versionId !== "null" ? { versionId } : {}) };
}

export class S3Store implements TargetStore {
  readonly client: S3Client;
  readonly bucket: string;
  #versioning: Promise<boolean> | undefined;
  /** Single-object requests go around the SDK's pipeline when the endpoint allows (s3-object-requests.ts). */
  readonly #directRequests: () => Promise<S3ObjectRequests | undefined>;

  constructor(client: S3Client, bucket: string, options: ObjectRequestOptions = {}) {
    this.client = client;
    this.bucket = bucket;
    this.#directRequests = sharedUntilFailure(() => S3ObjectRequests.open(client, bucket, options));
  }

  async get(key: string, versionId?: string): Promise<StoredObject | undefined> {
    try {
      const direct = await this.#directRequests();
      if (direct) {
        const out = await direct.get(key, versionId);
        return { key, body: out.body, meta: metadataOf(out.headers) };
      }
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}) }));
      const bytes = out.Body ? await out.Body.transformToByteArray() : new Uint8Array();
      return { key, body: Buffer.from(bytes), meta: out.Metadata ?? {} };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async head(key: string): Promise<ObjectHead | undefined> {
    try {
      const direct = await this.#directRequests();
      if (direct) {
        const out = await direct.head(key);
        const version = out.headers["x-amz-version-id"];
        return objectHead(key, Number(out.headers["content-length"] ?? 0), metadataOf(out.headers), typeof version === "string" ? version : undefined);
      }
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return objectHead(key, out.ContentLength ?? 0, out.Metadata ?? {}, out.VersionId);
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  async put(key: string, body: Uint8Array, meta: Record<string, string> = {}): Promise<void> {
    if (body.length > MULTIPART_THRESHOLD) {
      await putInParts(this.client, { bucket: this.bucket, key, size: body.length, metadata: meta, read: async (offset, length) => body.subarray(offset, offset + length) });
      return;
    }
    const direct = await this.#directRequests();
    if (direct) await direct.put(key, body, meta);
    else await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, Metadata: meta }));
  }

  /** CopyObject, or for a source over 5 GiB (which S3 refuses to CopyObject) a copy in parts. */
  async copy(from: string, to: string, meta: Record<string, string>): Promise<void> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: to,
          CopySource: copySource(this.bucket, from),
          Metadata: meta,
          MetadataDirective: "REPLACE",
        }),
      );
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(from);
      if (!isCopySourceTooLarge(error)) throw error;
      await this.#copyInParts(from, to, meta);
    }
  }

  async #copyInParts(from: string, to: string, meta: Record<string, string>): Promise<void> {
    const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: from })).catch((error: unknown) => {
      throw isNotFound(error) ? new ObjectNotFoundError(from) : error;
    });
    await copyInParts(this.client, {
      bucket: this.bucket,
      key: to,
      copySource: copySource(this.bucket, from),
      size: head.ContentLength ?? 0,
      ...(head.ETag ? { etag: head.ETag } : {}),
      metadata: meta,
    });
  }

  async delete(key: string): Promise<void> {
    const direct = await this.#directRequests();
    if (direct) await direct.delete(key);
    else await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
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
