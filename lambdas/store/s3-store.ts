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
import { MULTIPART_THRESHOLD, putInParts } from "../s3-multipart.ts";
import { sharedUntilFailure } from "../../contract/async.ts";
import { encodeKeyPath, metadataOf, S3ObjectRequests, type ObjectRequestOptions } from "../s3-object-requests.ts";
import { ObjectNotFoundError, type ObjectHead, type ObjectInfo, type StoredObject, type TargetStore } from "./store.ts";

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === "NoSuchKey" || e?.name === "NotFound" || e?.$metadata?.httpStatusCode === 404;
}

/** S3 copy sources are URL-encoded "bucket/key". */
function copySource(bucket: string, key: string): string {
  return `${bucket}/${encodeKeyPath(key)}`;
}

function objectHead(key: string, size: number, meta: Record<string, string>, versionId: string | undefined, checksum: string | undefined): ObjectHead {
  // An unversioned bucket reports the version "null"; an object put in parts a checksum of its parts' ("...-N").
  const whole = checksum !== undefined && /^[A-Za-z0-9+/]{43}=$/.test(checksum) ? Buffer.from(checksum, "base64").toString("hex") : undefined;
  return { key, size, meta, ...(versionId && versionId !== "null" ? { versionId } : {}), ...(whole ? { checksumSha256: whole } : {}) };
}

const checksumOf = (body: Uint8Array) => createHash("sha256").update(body).digest("base64");

export interface S3StoreOptions extends ObjectRequestOptions {
  /**
   * The store checks the SHA-256 sent with a write and keeps it (S3 does):
   * heads report it as checksumSha256. An emulator that records the writer's
   * claim unchecked must not be trusted with it.
   * @default false
   */
  readonly storeVerifiesChecksums?: boolean;
}

export class S3Store implements TargetStore {
  readonly client: S3Client;
  readonly bucket: string;
  #versioning: Promise<boolean> | undefined;
  /** Single-object requests go around the SDK's pipeline when the endpoint allows (s3-object-requests.ts). */
  readonly #directRequests: () => Promise<S3ObjectRequests | undefined>;

  readonly #checksumsVerified: boolean;

  constructor(client: S3Client, bucket: string, options: S3StoreOptions = {}) {
    this.client = client;
    this.bucket = bucket;
    this.#checksumsVerified = options.storeVerifiesChecksums ?? false;
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

  async hash(key: string, versionId?: string): Promise<{ sha256: string; size: number } | undefined> {
    try {
      const out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key, ...(versionId !== undefined ? { VersionId: versionId } : {}) }));
      const hash = createHash("sha256");
      let size = 0;
      const reader = out.Body?.transformToWebStream().getReader();
      for (let chunk = await reader?.read(); chunk && !chunk.done; chunk = await reader?.read()) {
        hash.update(chunk.value);
        size += chunk.value.length;
      }
      return { sha256: hash.digest("hex"), size };
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
        const checksum = out.headers["x-amz-checksum-sha256"];
        return objectHead(
          key,
          Number(out.headers["content-length"] ?? 0),
          metadataOf(out.headers),
          typeof version === "string" ? version : undefined,
          this.#checksumsVerified && typeof checksum === "string" ? checksum : undefined,
        );
      }
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key, ChecksumMode: "ENABLED" }));
      return objectHead(key, out.ContentLength ?? 0, out.Metadata ?? {}, out.VersionId, this.#checksumsVerified ? out.ChecksumSHA256 : undefined);
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
    // S3 checks the body against its SHA-256 and keeps it: a snapshot's verification reads it back with a HEAD.
    const checksum = checksumOf(body);
    const direct = await this.#directRequests();
    if (direct) await direct.put(key, body, meta, checksum);
    else await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, Metadata: meta, ChecksumSHA256: checksum }));
  }

  async copy(from: string, to: string, meta: Record<string, string>): Promise<void> {
    try {
      await this.client.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: to,
          CopySource: copySource(this.bucket, from),
          Metadata: meta,
          MetadataDirective: "REPLACE",
          // S3 computes the copy's SHA-256 from the bytes it copies.
          ChecksumAlgorithm: "SHA256",
        }),
      );
    } catch (error) {
      if (isNotFound(error)) throw new ObjectNotFoundError(from);
      throw error;
    }
  }

  async delete(key: string): Promise<void> {
    const direct = await this.#directRequests();
    if (direct) await direct.delete(key);
    else await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    let token: string | undefined;
    do {
      const out = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const object of out.Contents ?? []) {
        if (object.Key !== undefined) {
          yield {
            key: object.Key,
            size: object.Size ?? 0,
            ...(object.ETag ? { etag: object.ETag } : {}),
            ...(object.LastModified ? { lastModified: object.LastModified } : {}),
          };
        }
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
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
