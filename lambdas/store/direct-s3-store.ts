// The applier's store on S3: single-object requests (GET, HEAD, small PUTs,
// DELETE) signed with the SDK's signer and sent directly, without the SDK's
// per-request pipeline; everything else, and any endpoint that needs more
// than plain SigV4, through the SDK (S3Store). Measured under the bench's
// AWS-latency model on a Lambda-sized CPU (0.6 vCPU), one batch of 2,000
// small puts: 444 records/s against 375 with S3 at 20 ms a request, 1,317
// against 545 without latency (bench/notes.md). Only the applier uses it: it
// bypasses the handler's proxy and CA bundle, so a target behind either takes
// S3Store. Both pass test/support/store-contract.ts.

import type { S3Client } from "@aws-sdk/client-s3";
import { sharedUntilFailure } from "../../contract/async.ts";
import { MULTIPART_THRESHOLD } from "../s3-multipart.ts";
import { metadataOf, S3ObjectRequests, type ObjectRequestOptions } from "../s3-object-requests.ts";
import { isNotFound, objectHead, putChecksum, S3Store, type S3StoreOptions } from "./s3-store.ts";
import type { ObjectHead, PutOptions, StoredObject, WriteResult } from "./store.ts";

export class DirectS3Store extends S3Store {
  /** Resolves to undefined where the endpoint needs more than plain SigV4 (SigV4a, S3 Express): the SDK then does it all. */
  readonly #direct: () => Promise<S3ObjectRequests | undefined>;

  constructor(client: S3Client, bucket: string, options: S3StoreOptions & ObjectRequestOptions = {}) {
    super(client, bucket, options);
    this.#direct = sharedUntilFailure(() => S3ObjectRequests.open(client, bucket, options));
  }

  override async get(key: string, versionId?: string): Promise<StoredObject | undefined> {
    const direct = await this.#direct();
    if (!direct) return super.get(key, versionId);
    try {
      const out = await direct.get(key, versionId);
      return { key, body: out.body, meta: metadataOf(out.headers) };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  override async head(key: string): Promise<ObjectHead | undefined> {
    const direct = await this.#direct();
    if (!direct) return super.head(key);
    try {
      const out = await direct.head(key);
      const version = out.headers["x-amz-version-id"];
      const checksum = out.headers["x-amz-checksum-sha256"];
      return objectHead(
        key,
        Number(out.headers["content-length"] ?? 0),
        metadataOf(out.headers),
        typeof version === "string" ? version : undefined,
        this.checksumsVerified && typeof checksum === "string" ? checksum : undefined,
      );
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
  }

  override async put(key: string, body: Uint8Array, meta: Record<string, string> = {}, options: PutOptions = {}): Promise<WriteResult> {
    const direct = body.length > MULTIPART_THRESHOLD ? undefined : await this.#direct();
    // S3 checks the body against its SHA-256 and keeps it: a snapshot's verification reads it back with a HEAD.
    return direct ? direct.put(key, body, meta, putChecksum(body, options)) : super.put(key, body, meta, options);
  }

  override async delete(key: string): Promise<void> {
    const direct = await this.#direct();
    if (direct) await direct.delete(key);
    else await super.delete(key);
  }
}
