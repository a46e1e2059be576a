// The bucket as `tidemark restore` reads it: each GET of a file's bytes (or
// of a ranged part) signed and sent directly (s3-object-requests.ts, the
// applier's lean path), without the SDK's per-request pipeline, which cost
// more CPU than the bytes it brought for small files (bench/notes.md). A
// direct answer is read whole into memory, so a GET asks for at most
// DIRECT_READ_BYTES: an object found larger than that (or an empty one, whose
// range S3 refuses) is streamed through the SDK instead. Only where requests
// to the bucket's endpoint go through no proxy, need no extra CA (a CA bundle
// is configured and the endpoint is https), and are plain SigV4; otherwise
// they go through the SDK, whose handler holds the proxy and the CA bundle.
// A server that ignores the Range (any answer but 206) is read through the
// SDK too, and a body longer than the range is refused before it is read.
// A direct GET gives up as the CLI's other reads do (READ_IDLE_TIMEOUT_MS,
// READ_MINIMUM_TRANSFER): an endpoint that stops, or trickles a byte now and
// then, fails the file instead of holding the restore.

import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { getEndpointFromInstructions } from "@smithy/core/endpoints";
import { sharedUntilFailure } from "../../contract/async.ts";
import { metadataOf, S3ObjectRequests } from "../s3-object-requests.ts";
import { AwsRequestError, type SignedResponse } from "../signed-requests.ts";
import { HttpAnswerTooLargeError, type MinimumTransfer } from "../http1-pool.ts";
import { isNotFound, S3Store } from "../store/s3-store.ts";
import { SourceChangedError, type ObjectStream, type ReadStreamOptions } from "../store/store.ts";
import { caBundleFile, proxyFor, proxyPlan, READ_IDLE_TIMEOUT_MS, READ_MINIMUM_TRANSFER, type HttpSettings } from "./http-settings.ts";

/** The most one direct GET asks for (and holds in memory until it is written). */
export const DIRECT_READ_BYTES = 8 * 1024 * 1024;

/** True when a request to url would go the same way outside the SDK's handler: no proxy for it, and no CA bundle to add for https. */
export function directReachable(url: URL, http: HttpSettings, env: NodeJS.ProcessEnv = process.env): boolean {
  if (proxyFor(url, proxyPlan(http, env)) !== undefined) return false;
  return url.protocol !== "https:" || caBundleFile(http, env) === undefined;
}

/** When a direct GET is abandoned. */
export interface DirectReadLimits {
  /** Nothing sent or received for this long. */
  readonly idleTimeoutMs: number;
  /** Less than this moved while the GET is on its connection. */
  readonly minimumTransfer: MinimumTransfer;
}

/** As the CLI's reads through the SDK. */
export const DIRECT_READ_LIMITS: DirectReadLimits = { idleTimeoutMs: READ_IDLE_TIMEOUT_MS, minimumTransfer: READ_MINIMUM_TRANSFER };

/** S3Store whose readStream sends direct GETs where directReachable says the bucket's endpoint allows it. */
export class RestoreS3Store extends S3Store {
  readonly #direct: () => Promise<S3ObjectRequests | undefined>;

  /** `http` and `env`: the proxy and CA bundle settings the client was built with; `limits`: when a direct GET gives up. */
  constructor(client: S3Client, bucket: string, http: HttpSettings, env: NodeJS.ProcessEnv = process.env, limits: DirectReadLimits = DIRECT_READ_LIMITS) {
    super(client, bucket);
    this.#direct = sharedUntilFailure(async () => {
      const endpoint = await getEndpointFromInstructions({ Bucket: bucket, Key: "-" }, PutObjectCommand, client.config);
      return directReachable(endpoint.url, http, env) ? S3ObjectRequests.open(client, bucket, limits) : undefined;
    });
  }

  /** Whether object bytes are read by direct GETs (else through the SDK). */
  async readsDirect(): Promise<boolean> {
    return (await this.#direct()) !== undefined;
  }

  override async readStream(key: string, options: ReadStreamOptions = {}): Promise<ObjectStream | undefined> {
    const direct = await this.#direct();
    if (!direct) return super.readStream(key, options);
    const { versionId, offset, length, ifMatch } = options;
    const ranged = offset !== undefined && length !== undefined;
    if (ranged && length > DIRECT_READ_BYTES) return super.readStream(key, options);
    const from = ranged ? offset : 0;
    const to = ranged ? offset + length - 1 : DIRECT_READ_BYTES - 1;
    let answer: SignedResponse;
    try {
      answer = await direct.send("GET", key, {
        headers: { range: `bytes=${from}-${to}`, ...(ifMatch !== undefined ? { "if-match": ifMatch } : {}) },
        ...(versionId !== undefined ? { query: { versionId } } : {}),
        maxBodyBytes: to - from + 1,
      });
    } catch (error) {
      if (isNotFound(error)) return undefined;
      if (error instanceof HttpAnswerTooLargeError) return super.readStream(key, options);
      const status = error instanceof AwsRequestError ? error.$metadata.httpStatusCode : undefined;
      if (ifMatch !== undefined && status === 412) throw new SourceChangedError(key, ifMatch, "nothing more was read");
      // 416: the whole object asked for was empty (S3 refuses any range of it); the SDK reads it as it is.
      if (!ranged && status === 416) return super.readStream(key, options);
      throw error;
    }
    // Only a 206 holds the range asked for.
    if (answer.status !== 206) return super.readStream(key, options);
    const { headers } = answer;
    // The body's pieces, never joined (one for an answer with a Content-Length; a large one is given back once written, restore-content.ts).
    const chunks = answer.chunks ?? [answer.body];
    const received = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
    // A range's answer names the whole object's size after the slash of Content-Range; a server that ignores the range sends it all.
    const total = /\/(\d+)$/.exec(String(headers["content-range"] ?? ""))?.[1];
    const size = total !== undefined ? Number(total) : received;
    // The whole object was asked for but it is larger than one direct GET holds: streamed through the SDK instead.
    if (!ranged && size > received) return super.readStream(key, options);
    const version = headers["x-amz-version-id"];
    const etag = headers.etag;
    return {
      size,
      meta: metadataOf(headers),
      ...(typeof version === "string" && version !== "" && version !== "null" ? { versionId: version } : {}),
      ...(typeof etag === "string" && etag !== "" ? { etag } : {}),
      body: (async function* () {
        yield* chunks;
      })(),
      discard: () => undefined,
    };
  }
}

