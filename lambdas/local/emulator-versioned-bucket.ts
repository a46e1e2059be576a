// The HTTP side of the local cloud's versioned buckets: a layer in front of
// fauxqs, in fauxqs's own HTTP server, that answers what fauxqs has no route
// for (GetBucketVersioning,
// ListObjectVersions, reads, copies and deletes of one version, deletes that
// leave a delete marker) from the versions emulator-versions.ts keeps, adds
// x-amz-version-id to fauxqs's answers to writes and reads, and passes
// everything else (SQS, uploads of parts, listings) to fauxqs's handler in this
// process: no second HTTP hop, whose socket writes cost as much CPU as the
// request itself. It runs only for startEmulator({ versioned: true }): the
// default, unversioned emulator is fauxqs alone.
//
// A write to a key and the version id its answer names are one step: the
// requests that change or read a key's current version run one at a time
// per key (parts of an upload do not wait).

import { openSync } from "node:fs";
import type http from "node:http";
import { copyObjectResultXml, copySourceTooLarge, MAX_COPY_BYTES } from "./emulator-copies.ts";
import { copyArguments, copyRange, copyTarget, linkedCopy, putObjectFromFile, sendFile } from "./emulator-file-bodies.ts";
import { homeOf, readBodyFile } from "./emulator-large-objects.ts";
import { answerOf, byteRange, checkCopySourceIfMatch, copySourceOf, errorXml, header, NO_SUCH_BUCKET, NO_SUCH_KEY, objectHeaders, replayed, requestId, S3ErrorAnswer, target } from "./emulator-s3-http.ts";
import { listVersionPage, versionPageXml, type VersionListOptions } from "./emulator-version-listing.ts";
import { type BucketVersions, type EmulatorObject, type Version } from "./emulator-versions.ts";

/** A large version's body, read whole (for a copy). */
function readVersionFile(file: string): Buffer {
  const body = readBodyFile(file);
  if (!body) throw new Error(`the body file of a kept version is missing: ${file}`);
  return body;
}

/** Runs the work for one key at a time, in arrival order. */
class KeyLocks {
  readonly #tails = new Map<string, Promise<unknown>>();

  async run<T>(id: string, work: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(id) ?? Promise.resolve();
    const done = Promise.withResolvers<undefined>();
    const tail = before.then(() => done.promise);
    this.#tails.set(id, tail);
    await before;
    try {
      return await work();
    } finally {
      done.resolve(undefined);
      if (this.#tails.get(id) === tail) this.#tails.delete(id);
    }
  }
}

async function readAll(request: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return Buffer.concat(chunks);
}

type RequestListener = (request: http.IncomingMessage, response: http.ServerResponse) => void;

/**
 * Serves every bucket versioned (`versions`, from versionStore) from fauxqs's
 * own HTTP server `fauxqsHttp`: its request listeners (fauxqs's, and any
 * layer before it) get what this layer passes on.
 */
export function serveVersionedBuckets(fauxqsHttp: http.Server, versions: BucketVersions, options: { maxCopyObjectBytes?: number } = {}): void {
  const behind = fauxqsHttp.listeners("request");
  const fauxqs: RequestListener = (request, response) => {
    for (const listener of behind) Reflect.apply(listener, fauxqsHttp, [request, response]);
  };
  const layer = new VersionedBucketLayer(versions, fauxqs, options.maxCopyObjectBytes ?? MAX_COPY_BYTES);
  fauxqsHttp.removeAllListeners("request");
  fauxqsHttp.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => layer.handle(request, response));
}

class VersionedBucketLayer {
  readonly #versions: BucketVersions;
  readonly #fauxqs: RequestListener;
  readonly #maxCopyObjectBytes: number;
  readonly #locks = new KeyLocks();

  constructor(versions: BucketVersions, fauxqs: RequestListener, maxCopyObjectBytes: number) {
    this.#versions = versions;
    this.#fauxqs = fauxqs;
    this.#maxCopyObjectBytes = maxCopyObjectBytes;
  }

  handle(request: http.IncomingMessage, response: http.ServerResponse): void {
    this.#handle(request, response).catch((error: unknown) => this.#fail(response, error));
  }

  get #store() {
    return this.#versions.store;
  }

  async #handle(request: http.IncomingMessage, response: http.ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://emulator");
    const at = target(request, url.pathname);
    const query = url.searchParams;
    // fauxqs takes PUT /bucket?versioning for CreateBucket: a bucket it does not hold has no versioning either.
    if (at && at.key === "" && !this.#store.buckets.has(at.bucket) && (query.has("versioning") || query.has("versions"))) throw NO_SUCH_BUCKET(at.bucket);
    // SQS, fauxqs's own routes and buckets it does not hold: its answers as they are.
    if (!at || !this.#store.buckets.has(at.bucket)) return this.#forward(request, response);
    return at.key === "" ? this.#bucketRequest(request, response, at.bucket, query) : this.#objectRequest(request, response, at.bucket, at.key, query);
  }

  async #bucketRequest(request: http.IncomingMessage, response: http.ServerResponse, bucket: string, query: URLSearchParams): Promise<void> {
    const method = request.method ?? "GET";
    if (method === "GET" && query.has("versioning")) {
      const xml = `<?xml version="1.0" encoding="UTF-8"?>\n<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>`;
      return this.#answer(response, 200, { "content-type": "application/xml" }, xml);
    }
    if (method === "PUT" && query.has("versioning")) {
      const body = (await readAll(request)).toString("utf8");
      if (/<Status>\s*Enabled\s*<\/Status>/.test(body)) return this.#answer(response, 200, {});
      throw new S3ErrorAnswer("NotImplemented", "the local cloud's versioned emulator keeps every bucket versioned (Enabled): it cannot suspend versioning", 501);
    }
    if (method === "GET" && query.has("versions")) return this.#listVersions(response, bucket, query);
    if (method === "DELETE" && !query.has("lifecycle")) {
      if (this.#versions.holdsVersions(bucket)) throw new S3ErrorAnswer("BucketNotEmpty", "The bucket you tried to delete is not empty. You must delete all versions in the bucket.", 409);
      return this.#forward(request, response, {
        onAnswer: (status) => {
          if (status === 204) this.#versions.forgetBucket(bucket);
          return {};
        },
      });
    }
    if (method === "POST" && query.has("delete")) {
      const body = await readAll(request);
      if (/<VersionId>/.test(body.toString("utf8"))) {
        throw new S3ErrorAnswer("NotImplemented", "the local cloud does not emulate DeleteObjects of named versions: delete each version with DeleteObject", 501);
      }
      return this.#forward(request, response, { body });
    }
    return this.#forward(request, response);
  }

  async #objectRequest(request: http.IncomingMessage, response: http.ServerResponse, bucket: string, key: string, query: URLSearchParams): Promise<void> {
    const method = request.method ?? "GET";
    const lock = <T>(work: () => Promise<T>) => this.#locks.run(`${bucket}\0${key}`, work);
    const versionId = query.get("versionId") ?? undefined;
    const plain = [...query.keys()].every((name) => name === "versionId" || name === "partNumber" || name.startsWith("response-") || name.startsWith("X-Amz-") || name === "x-id");
    if ((method === "GET" || method === "HEAD") && plain) {
      return lock(() => (versionId !== undefined ? this.#readVersion(request, response, bucket, key, versionId, query) : this.#readCurrent(request, response, bucket, key)));
    }
    if (method === "DELETE" && !query.has("uploadId")) return lock(() => this.#delete(request, response, bucket, key, versionId));
    if (method === "PUT" && query.has("uploadId")) {
      if (copySourceOf(request)?.versionId !== undefined) throw new S3ErrorAnswer("NotImplemented", "the local cloud does not emulate UploadPartCopy from a named version", 501);
      return this.#forward(request, response);
    }
    if (method === "PUT" && plain) {
      const source = copySourceOf(request);
      if (source?.versionId !== undefined) return lock(() => this.#copyVersion(request, response, bucket, key, { ...source, versionId: source.versionId ?? "" }));
      return lock(() => this.#write(request, response, bucket, key, source));
    }
    if (method === "POST" && query.has("uploadId")) return lock(() => this.#write(request, response, bucket, key, undefined));
    return this.#forward(request, response);
  }

  /** PutObject, CopyObject or CompleteMultipartUpload by fauxqs, answered with the version written. */
  #write(request: http.IncomingMessage, response: http.ServerResponse, bucket: string, key: string, source: { bucket: string; key: string } | undefined): Promise<void> {
    // fauxqs ignores x-amz-copy-source-if-match; S3 refuses to copy a source that changed.
    const sourceObject = source && this.#store.buckets.get(source.bucket)?.get(source.key);
    if (sourceObject) checkCopySourceIfMatch(request, sourceObject);
    const sourceVersion = source && this.#currentObjectVersion(source.bucket, source.key);
    return this.#forward(request, response, {
      onAnswer: (status) => {
        const written = status === 200 ? this.#currentObjectVersion(bucket, key) : undefined;
        return {
          ...(written ? { "x-amz-version-id": written.versionId } : {}),
          ...(written && sourceVersion ? { "x-amz-copy-source-version-id": sourceVersion.versionId } : {}),
        };
      },
    });
  }

  async #readCurrent(request: http.IncomingMessage, response: http.ServerResponse, bucket: string, key: string): Promise<void> {
    const newest = this.#versions.versions(bucket, key)[0];
    if (newest?.deleteMarker) {
      const headers = { "x-amz-delete-marker": "true", "x-amz-version-id": newest.versionId, "last-modified": newest.lastModified.toUTCString() };
      return this.#error(request, response, NO_SUCH_KEY(), headers);
    }
    return this.#forward(request, response, { onAnswer: (status): Record<string, string> => (newest && status < 400 ? { "x-amz-version-id": newest.versionId } : {}) });
  }

  async #readVersion(request: http.IncomingMessage, response: http.ServerResponse, bucket: string, key: string, versionId: string, query: URLSearchParams): Promise<void> {
    const versions = this.#versions.versions(bucket, key);
    const version = versions.find((v) => v.versionId === versionId);
    if (!version) throw new S3ErrorAnswer("NoSuchVersion", "The specified version does not exist.", 404);
    if (version.deleteMarker) {
      const headers = { "x-amz-delete-marker": "true", "x-amz-version-id": version.versionId, "last-modified": version.lastModified.toUTCString(), allow: "DELETE" };
      return this.#error(request, response, new S3ErrorAnswer("MethodNotAllowed", "The specified method is not allowed against this resource.", 405), headers);
    }
    const noncurrent = version.noncurrent;
    if (!noncurrent) {
      // The current version: fauxqs's own answer (ranges, parts, conditions), with its version id.
      query.delete("versionId");
      const path = (request.url ?? "/").split("?")[0] ?? "/";
      const search = query.toString();
      return this.#forward(request, response, { path: search ? `${path}?${search}` : path, onAnswer: () => ({ "x-amz-version-id": versionId }) });
    }
    if (query.has("partNumber")) throw new S3ErrorAnswer("NotImplemented", "the local cloud does not emulate GetObject of one part of a noncurrent version", 501);
    const object = noncurrent.object;
    const range = header(request, "range");
    const headers = objectHeaders(object, versionId, header(request, "x-amz-checksum-mode")?.toUpperCase() === "ENABLED" && !range);
    if (request.method === "HEAD") return this.#answer(response, 200, { ...headers, "content-length": String(object.contentLength) });
    let start = 0;
    let end = object.contentLength - 1;
    if (range) {
      const bytes = byteRange(range, object.contentLength);
      if (!bytes) throw new S3ErrorAnswer("InvalidRange", "The requested range is not satisfiable", 416);
      ({ start, end } = bytes);
      headers["content-range"] = `bytes ${start}-${end}/${object.contentLength}`;
    }
    const status = range ? 206 : 200;
    const length = Math.max(0, end - start + 1);
    // A large version streams from its file.
    if (noncurrent.file) return sendFile(response, status, headers, noncurrent.file, start, end);
    const body = this.#versions.bodyOf(version, readVersionFile);
    return this.#answer(response, status, headers, body.subarray(start, start + length));
  }

  async #delete(request: http.IncomingMessage, response: http.ServerResponse, bucket: string, key: string, versionId: string | undefined): Promise<void> {
    await readAll(request);
    if (versionId !== undefined) {
      const removed = this.#versions.removeVersion(bucket, key, versionId);
      return this.#answer(response, 204, { "x-amz-version-id": versionId, ...(removed?.deleteMarker ? { "x-amz-delete-marker": "true" } : {}) });
    }
    this.#store.deleteObject(bucket, key);
    const marker = this.#versions.versions(bucket, key)[0];
    return this.#answer(response, 204, { "x-amz-delete-marker": "true", ...(marker ? { "x-amz-version-id": marker.versionId } : {}) });
  }

  /** CopyObject of a named version of the source (fauxqs reads only current objects). */
  async #copyVersion(request: http.IncomingMessage, response: http.ServerResponse, bucket: string, key: string, source: { bucket: string; key: string; versionId: string }): Promise<void> {
    if (!this.#store.buckets.has(source.bucket)) throw NO_SUCH_BUCKET(source.bucket);
    const version = this.#versions.versions(source.bucket, source.key).find((v) => v.versionId === source.versionId);
    if (!version) throw new S3ErrorAnswer("NoSuchVersion", "The specified version does not exist.", 404);
    if (version.deleteMarker) throw new S3ErrorAnswer("InvalidRequest", "The source of a copy request may not specifically refer to a delete marker by version id.", 400);
    const noncurrent = version.noncurrent;
    if (!noncurrent) {
      // The current version: fauxqs's own copy (or emulator-file-bodies.ts's, of a body in a file), named without the version.
      request.headers["x-amz-copy-source"] = `${encodeURIComponent(source.bucket)}/${source.key.split("/").map(encodeURIComponent).join("/")}`;
      return this.#write(request, response, bucket, key, source);
    }
    await readAll(request);
    const from = noncurrent.object;
    checkCopySourceIfMatch(request, from);
    // As fauxqs copies: COPY keeps the source's metadata and checksum, REPLACE takes the request's.
    const args = copyArguments(request, from);
    const home = homeOf(this.#store.persistence);
    let written: EmulatorObject;
    if (noncurrent.file && home) {
      // A large version is linked (or copied file to file), never read whole.
      if (from.contentLength > this.#maxCopyObjectBytes) throw copySourceTooLarge(this.#maxCopyObjectBytes);
      const file = (await linkedCopy(noncurrent.file, from, home)) ?? (await copyRange(openSync(noncurrent.file, "r"), 0, from.contentLength - 1, copyTarget(home), home.durable));
      written = putObjectFromFile(this.#store, bucket, key, file, args);
    } else {
      const body = this.#versions.bodyOf(version, readVersionFile);
      written = this.#store.putObject(bucket, key, body, args.contentType, args.metadata, args.system, args.checksum);
    }
    const newVersion = this.#currentObjectVersion(bucket, key);
    const xml = copyObjectResultXml(written);
    return this.#answer(
      response,
      200,
      { "content-type": "application/xml", "x-amz-copy-source-version-id": source.versionId, ...(newVersion ? { "x-amz-version-id": newVersion.versionId } : {}) },
      xml,
    );
  }

  #listVersions(response: http.ServerResponse, bucket: string, query: URLSearchParams): void {
    if (query.has("encoding-type")) throw new S3ErrorAnswer("NotImplemented", "the local cloud lists versions without encoding-type", 501);
    const maxKeysText = query.get("max-keys");
    const maxKeys = maxKeysText === null ? 1000 : Number(maxKeysText);
    if (!Number.isInteger(maxKeys) || maxKeys < 0) throw new S3ErrorAnswer("InvalidArgument", "Provided max-keys not an integer or within integer range", 400);
    const keyMarker = query.get("key-marker") || undefined;
    const versionIdMarker = query.get("version-id-marker") || undefined;
    if (versionIdMarker !== undefined && keyMarker === undefined) throw new S3ErrorAnswer("InvalidArgument", "A version-id marker cannot be specified without a key marker.", 400);
    const options: VersionListOptions = {
      prefix: query.get("prefix") ?? "",
      maxKeys: Math.min(maxKeys, 1000),
      ...(query.get("delimiter") ? { delimiter: query.get("delimiter") ?? "" } : {}),
      ...(keyMarker !== undefined ? { keyMarker } : {}),
      ...(versionIdMarker !== undefined ? { versionIdMarker } : {}),
    };
    const page = listVersionPage(this.#versions.keys(bucket), options);
    this.#answer(response, 200, { "content-type": "application/xml" }, versionPageXml(bucket, options, page));
  }

  #currentObjectVersion(bucket: string, key: string): Version | undefined {
    const newest = this.#versions.versions(bucket, key)[0];
    return newest && !newest.deleteMarker && !newest.noncurrent ? newest : undefined;
  }

  /**
   * Hands the request to fauxqs (with the body given, when this layer read it
   * already), its answer with the headers onAnswer adds for its status;
   * settles once the answer's head is written, or the answer is dropped.
   */
  #forward(
    request: http.IncomingMessage,
    response: http.ServerResponse,
    options: { path?: string; body?: Buffer; onAnswer?: (status: number) => Record<string, string> } = {},
  ): Promise<void> {
    return new Promise<void>((resolve) => {
      const { onAnswer } = options;
      const writeHead = response.writeHead;
      // ServerResponse writes its head through writeHead, also when it is not called (end() without it).
      Object.defineProperty(response, "writeHead", {
        configurable: true,
        writable: true,
        value: (status: number, ...rest: unknown[]) => {
          Object.defineProperty(response, "writeHead", { configurable: true, writable: true, value: writeHead });
          for (const [name, value] of Object.entries(onAnswer?.(status) ?? {})) response.setHeader(name, value);
          resolve();
          return Reflect.apply(writeHead, response, [status, ...rest]);
        },
      });
      response.once("close", () => resolve());
      const passed = options.body ? replayed(request, options.body) : request;
      if (options.path !== undefined) passed.url = options.path;
      this.#fauxqs(passed, response);
    });
  }

  #answer(response: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, body?: string | Buffer): void {
    const bytes = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body, "utf8");
    response.writeHead(status, { ...headers, ...(bytes ? { "content-length": String(bytes.length) } : {}), "x-amz-request-id": requestId(), "x-amz-id-2": "tidemark-local" });
    response.end(bytes);
  }

  #error(request: http.IncomingMessage, response: http.ServerResponse, error: S3ErrorAnswer, headers: Record<string, string> = {}): void {
    // A HEAD answer has no body: the status (and headers) say it all.
    if (request.method === "HEAD") return this.#answer(response, error.status, headers);
    this.#answer(response, error.status, { ...headers, "content-type": "application/xml" }, errorXml(error));
  }

  #fail(response: http.ServerResponse, error: unknown): void {
    if (response.headersSent) {
      response.destroy(error instanceof Error ? error : undefined);
      return;
    }
    const answer = answerOf(error) ?? new S3ErrorAnswer("InternalError", `the local cloud's versioned bucket failed: ${error instanceof Error ? error.message : String(error)}`, 500);
    const request = response.req;
    this.#error(request, response, answer);
  }
}
