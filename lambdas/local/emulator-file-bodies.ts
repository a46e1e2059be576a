// fauxqs reads an object whole into a Buffer to answer a GET (also of a
// range or a part), a CopyObject or an UploadPartCopy: for a 4 GiB staged
// file, gigabytes at once, and a copy holds two. A body kept in a file (over
// its store's large-body threshold: emulator-large-objects.ts,
// emulator-memory-bodies.ts) is served here from its file instead, before
// fauxqs sees the request, in the same process and on the same port: a GET
// streams the bytes asked for, a CopyObject links the new object to the same
// file (bodies in files are never changed in place), and an UploadPartCopy
// copies the range in slices into the part's file, with its MD5 for the ETag
// and the checksum the upload asks for (emulator-multipart.ts joins it on
// disk). An UploadPartCopy of a body in memory is answered here too, to name
// the copied part's checksum as S3 does (emulator-copies.ts). Everything
// else, and any other request whose object is not in a file, is fauxqs's.
//
// As S3 does, CopyObject refuses a source over 5 GiB (the applier then copies
// in parts: lambdas/s3-multipart.ts), an UploadPartCopy takes at most 5 GiB
// and part numbers 1 to 10,000, and x-amz-copy-source-if-match pins a copied
// part to the source's ETag.

import { createHash, randomUUID } from "node:crypto";
import { closeSync, createReadStream, createWriteStream, existsSync, linkSync, mkdirSync, openSync, renameSync, rmSync } from "node:fs";
import type http from "node:http";
import { join } from "node:path";
import { pipeline } from "node:stream/promises";
import { bodyPath, homeOf, type BodyHome } from "./emulator-large-objects.ts";
import { copiedPartNumber, copiedRange, copyObjectResultXml, copyPartResultXml, copySourceTooLarge, MAX_COPY_BYTES, noSuchUpload, partChecksum, type PartChecksum } from "./emulator-copies.ts";
import { contentMd5Of, partPath, recordPartInFile } from "./emulator-multipart.ts";
import { answerOf, byteRange, checkCopySourceIfMatch, copySourceOf, errorXml, header, NO_SUCH_BUCKET, NO_SUCH_KEY, objectHeaders, requestId, S3ErrorAnswer, target, userMetadata } from "./emulator-s3-http.ts";
import type { ChecksumData, EmulatorObject, SystemMetadata } from "./emulator-versions.ts";
import { fauxqsPrototype } from "./fauxqs-internals.ts";

const EMPTY = Buffer.alloc(0);

/** The part of fauxqs's S3 store (dist/s3/s3Store.js) this module reads and writes through. */
export interface FileBodyStore {
  readonly buckets: Map<string, Map<string, EmulatorObject>>;
  readonly multipartUploads: Map<string, { readonly parts: Map<number, object>; readonly checksumAlgorithm?: string }>;
  persistence?: unknown;
  uploadPart(uploadId: string, partNumber: number, body: Buffer, checksumValue?: string): { readonly etag: string };
  /** The object with its body (read from the persistence, where it keeps bodies). */
  getObject(bucket: string, key: string): EmulatorObject;
  putObject(bucket: string, key: string, body: Buffer, contentType?: string, metadata?: Record<string, string>, systemMetadata?: SystemMetadata, checksumData?: ChecksumData): EmulatorObject;
}

/** A body written to a file of the store's BodyHome, with its size and MD5 ETag (and the checksum asked for, base64). */
export interface BodyFile {
  readonly path: string;
  readonly size: number;
  readonly etag: string;
  readonly checksum?: string;
}

/** What a copy writes besides the bytes: S3's COPY keeps the source's metadata and checksum, REPLACE takes the request's. */
export interface CopyArguments {
  readonly contentType: string;
  readonly metadata: Record<string, string>;
  readonly system: SystemMetadata;
  readonly checksum: ChecksumData | undefined;
}

export function copyArguments(request: http.IncomingMessage, from: EmulatorObject): CopyArguments {
  const replace = header(request, "x-amz-metadata-directive") === "REPLACE";
  if (!replace) {
    return {
      contentType: from.contentType,
      metadata: from.metadata,
      system: { contentLanguage: from.contentLanguage, contentDisposition: from.contentDisposition, cacheControl: from.cacheControl, contentEncoding: from.contentEncoding },
      checksum:
        from.checksumAlgorithm && from.checksumValue && from.checksumType
          ? { algorithm: from.checksumAlgorithm, value: from.checksumValue, type: from.checksumType, ...(from.partChecksums ? { partChecksums: from.partChecksums } : {}) }
          : undefined,
    };
  }
  const requestChecksum = Object.entries(request.headers).find(([name]) => /^x-amz-checksum-(crc32|crc32c|crc64nvme|sha1|sha256)$/.test(name));
  const optional = (name: string) => header(request, name);
  return {
    contentType: header(request, "content-type") ?? "application/octet-stream",
    metadata: userMetadata(request),
    system: {
      ...(optional("content-language") ? { contentLanguage: optional("content-language") } : {}),
      ...(optional("content-disposition") ? { contentDisposition: optional("content-disposition") } : {}),
      ...(optional("cache-control") ? { cacheControl: optional("cache-control") } : {}),
      ...(optional("content-encoding") ? { contentEncoding: optional("content-encoding") } : {}),
    },
    checksum:
      requestChecksum && typeof requestChecksum[1] === "string"
        ? { algorithm: requestChecksum[0].slice("x-amz-checksum-".length).toUpperCase(), value: requestChecksum[1], type: "FULL_OBJECT" }
        : undefined,
  };
}

/** A new file for a copy in home (its folder made); removeLeftoverParts clears what a crash left. */
export function copyTarget(home: BodyHome): string {
  const dir = join(home.dir, "_copies");
  mkdirSync(dir, { recursive: true });
  return join(dir, randomUUID());
}

/**
 * Copies bytes [start, end] of the open file fd (closed after) to a new file
 * at `to`, a slice at a time, flushed when durable; its size, MD5 ETag and,
 * given one, the checksum.
 */
export async function copyRange(fd: number, start: number, end: number, to: string, durable: boolean, checksum?: PartChecksum): Promise<BodyFile> {
  const md5 = createHash("md5");
  let size = 0;
  const temp = `${to}.${randomUUID()}.tmp`;
  try {
    await pipeline(
      createReadStream("", { fd, start, end, highWaterMark: 1024 * 1024 }),
      async function* hashing(source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          md5.update(chunk);
          checksum?.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(temp, { flush: durable }),
    );
    renameSync(temp, to);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
  if (size !== end - start + 1) throw new Error(`a body file ended early: ${size} of ${end - start + 1} bytes copied`);
  return { path: to, size, etag: `"${md5.digest("hex")}"`, ...(checksum ? { checksum: checksum.digest() } : {}) };
}

let filesHashedForCopy = 0;

/** How many copies read their source's body whole for its MD5 so far (tests count them). */
export function copiesHashedFromFile(): number {
  return filesHashedForCopy;
}

/** The quoted MD5 of a file's bytes, read in slices. */
async function md5OfFile(path: string): Promise<string> {
  filesHashedForCopy += 1;
  const md5 = createHash("md5");
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 })) if (Buffer.isBuffer(chunk)) md5.update(chunk);
  return `"${md5.digest("hex")}"`;
}

/**
 * A whole copy as a hard link to the source's file, or undefined where the
 * file system has none: a body file is never changed in place (every write
 * makes a new file and renames it), so both objects can share it. A copy's
 * ETag is its bytes' MD5 (as on S3), a multipart object's is not: that one is
 * kept as its parts were joined on an unversioned store (emulator-multipart.ts),
 * else read from the link, only when an object is copied.
 */
export async function linkedCopy(path: string, from: EmulatorObject, home: BodyHome): Promise<BodyFile | undefined> {
  const to = copyTarget(home);
  try {
    linkSync(path, to);
  } catch (error) {
    if (error instanceof Error && "code" in error && error.code === "ENOENT") throw NO_SUCH_KEY();
    return undefined;
  }
  try {
    return { path: to, size: from.contentLength, etag: from.etag.includes("-") ? (contentMd5Of(from) ?? (await md5OfFile(to))) : from.etag };
  } catch (error) {
    rmSync(to, { force: true });
    throw error;
  }
}

let pending: BodyFile | undefined;

/** fauxqs's putObject of an object whose body is `file` (moved into place): its version, spy and answer as for any write. */
export function putObjectFromFile(store: Pick<FileBodyStore, "putObject">, bucket: string, key: string, file: BodyFile, args: CopyArguments): EmulatorObject {
  pending = file;
  try {
    return store.putObject(bucket, key, EMPTY, args.contentType, args.metadata, args.system, args.checksum);
  } finally {
    pending = undefined;
  }
}

async function patchPutFromFile(): Promise<void> {
  const prototype = await fauxqsPrototype<FileBodyStore>("./s3/s3Store.js", "S3Store", ["putObject"]);
  const putObject = prototype.putObject;
  prototype.putObject = function putObjectMaybeFromFile(bucket, key, body, ...rest) {
    const file = pending;
    pending = undefined;
    if (!file) return putObject.call(this, bucket, key, body, ...rest);
    const home = homeOf(this.persistence);
    if (!home) throw new Error("internal: a body in a file needs an emulator that keeps bodies in files");
    const written = putObject.call(this, bucket, key, EMPTY, ...rest);
    const object: EmulatorObject = { ...written, body: EMPTY, contentLength: file.size, etag: file.etag };
    home.recordInFile(bucket, object, file.path);
    this.buckets.get(bucket)?.set(key, object);
    return object;
  };
}

let patched: Promise<void> | undefined;

/** Lets putObjectFromFile write through fauxqs's store (before versioning wraps it); safe to call many times. */
export function putBodiesFromFiles(): Promise<void> {
  patched ??= patchPutFromFile();
  return patched;
}

/** The object at bucket/key and its body's file, when its body is in one. */
function inFile(store: FileBodyStore, home: BodyHome, bucket: string, key: string): { object: EmulatorObject; path: string } | undefined {
  const object = store.buckets.get(bucket)?.get(key);
  if (!object || object.body.length > 0 || object.contentLength <= home.largeBodyBytes) return undefined;
  const path = bodyPath(home, bucket, key);
  return existsSync(path) ? { object, path } : undefined;
}

/** Opens a body's file, pinning the bytes read to the object as it is now. */
function openBody(path: string): number {
  try {
    return openSync(path, "r");
  } catch (error) {
    if (error instanceof Error && "code" in error && error.code === "ENOENT") throw NO_SUCH_KEY();
    throw error;
  }
}

type Answer = (response: http.ServerResponse) => Promise<void>;

/** Query parameters of a plain GetObject (fauxqs answers every other GET of a key). */
const isReadParameter = (name: string) => name === "partNumber" || name === "versionId" || name === "x-id" || name.startsWith("response-") || name.startsWith("X-Amz-");

export interface FileBodyOptions {
  /** The largest source CopyObject takes (an UploadPartCopy takes MAX_COPY_BYTES whatever this is). @default MAX_COPY_BYTES */
  readonly maxCopyObjectBytes?: number;
}

class FileBodyServer {
  readonly #store: FileBodyStore;
  readonly #maxCopyObjectBytes: number;

  constructor(store: FileBodyStore, options: FileBodyOptions) {
    this.#store = store;
    this.#maxCopyObjectBytes = options.maxCopyObjectBytes ?? MAX_COPY_BYTES;
  }

  /** How this module answers request, or undefined when fauxqs answers it. */
  answerFor(request: http.IncomingMessage): Answer | undefined {
    const method = request.method;
    if (method !== "GET" && method !== "PUT") return undefined;
    const home = homeOf(this.#store.persistence);
    if (!home) return undefined;
    const url = new URL(request.url ?? "/", "http://emulator");
    const at = target(request, url.pathname);
    if (!at || at.key === "") return undefined;
    const query = url.searchParams;
    if (method === "GET") {
      if (![...query.keys()].every(isReadParameter)) return undefined;
      const body = inFile(this.#store, home, at.bucket, at.key);
      return body && ((response) => this.#get(request, response, body.object, body.path, query.get("partNumber")));
    }
    let source: ReturnType<typeof copySourceOf>;
    try {
      source = copySourceOf(request);
    } catch {
      return undefined;
    }
    if (!source || source.versionId !== undefined) return undefined;
    const from = this.#store.buckets.get(source.bucket)?.get(source.key);
    if (!from) return undefined;
    const body = inFile(this.#store, home, source.bucket, source.key);
    const uploadId = query.get("uploadId");
    const partNumber = query.get("partNumber");
    if (uploadId !== null && partNumber !== null) {
      if (body) return (response) => this.#copyPart(request, response, home, uploadId, partNumber, body.object, body.path);
      const held = this.#store.getObject(source.bucket, source.key);
      // A body neither in memory nor in its file (removed meanwhile): fauxqs's answer.
      if (held.body.length !== held.contentLength) return undefined;
      return (response) => this.#copyPart(request, response, home, uploadId, partNumber, held, undefined);
    }
    if (![...query.keys()].every((name) => name === "x-id")) return undefined;
    if (!body && from.contentLength <= this.#maxCopyObjectBytes) {
      // fauxqs copies whatever the source holds now; S3 refuses a source whose ETag is not the one the copy names.
      try {
        checkCopySourceIfMatch(request, from);
      } catch (error) {
        return () => Promise.reject(error);
      }
      return undefined;
    }
    return (response) => this.#copyObject(request, response, home, at, from, body?.path);
  }

  async #get(request: http.IncomingMessage, response: http.ServerResponse, object: EmulatorObject, path: string, partNumber: string | null): Promise<void> {
    const headers = objectHeaders(object, undefined, false);
    const checksumMode = header(request, "x-amz-checksum-mode")?.toUpperCase() === "ENABLED";
    if (partNumber !== null && object.parts) {
      const index = object.parts.findIndex((part) => part.partNumber === Number(partNumber));
      const part = object.parts[index];
      if (!part) throw new S3ErrorAnswer("InvalidPartNumber", "The requested partnumber is not satisfiable", 416);
      const checksum = object.partChecksums?.[index];
      if (checksumMode && object.checksumAlgorithm && checksum) {
        headers[`x-amz-checksum-${object.checksumAlgorithm.toLowerCase()}`] = checksum;
        headers["x-amz-checksum-type"] = "FULL_OBJECT";
      }
      const end = part.offset + part.length - 1;
      headers["content-range"] = `bytes ${part.offset}-${end}/${object.contentLength}`;
      return sendFile(response, 206, headers, path, part.offset, end);
    }
    // As fauxqs (and RFC 7232) order the conditions.
    const ifMatch = header(request, "if-match");
    const ifUnmodifiedSince = new Date(header(request, "if-unmodified-since") ?? Number.NaN);
    if (ifMatch !== undefined ? ifMatch !== object.etag : object.lastModified > ifUnmodifiedSince) {
      throw new S3ErrorAnswer("PreconditionFailed", "At least one of the pre-conditions you specified did not hold", 412);
    }
    const ifNoneMatch = header(request, "if-none-match");
    const ifModifiedSince = new Date(header(request, "if-modified-since") ?? Number.NaN);
    if (ifNoneMatch !== undefined ? ifNoneMatch === object.etag : object.lastModified <= ifModifiedSince) {
      response.writeHead(304, { "x-amz-request-id": requestId() });
      response.end();
      return;
    }
    const range = header(request, "range");
    if (range) {
      const bytes = byteRange(range, object.contentLength);
      if (!bytes) throw new S3ErrorAnswer("InvalidRange", "The requested range is not satisfiable", 416);
      headers["content-range"] = `bytes ${bytes.start}-${bytes.end}/${object.contentLength}`;
      return sendFile(response, 206, headers, path, bytes.start, bytes.end);
    }
    if (checksumMode && object.checksumAlgorithm && object.checksumValue) {
      headers[`x-amz-checksum-${object.checksumAlgorithm.toLowerCase()}`] = object.checksumValue;
      if (object.checksumType) headers["x-amz-checksum-type"] = object.checksumType;
    }
    return sendFile(response, 200, headers, path, 0, object.contentLength - 1);
  }

  async #copyObject(request: http.IncomingMessage, response: http.ServerResponse, home: BodyHome, to: { bucket: string; key: string }, from: EmulatorObject, path: string | undefined): Promise<void> {
    if (!this.#store.buckets.has(to.bucket)) throw NO_SUCH_BUCKET(to.bucket);
    checkCopySourceIfMatch(request, from);
    if (from.contentLength > this.#maxCopyObjectBytes || !path) throw copySourceTooLarge(this.#maxCopyObjectBytes);
    const args = copyArguments(request, from);
    const file = (await linkedCopy(path, from, home)) ?? (await copyRange(openBody(path), 0, from.contentLength - 1, copyTarget(home), home.durable));
    answerXml(response, copyObjectResultXml(putObjectFromFile(this.#store, to.bucket, to.key, file, args)));
  }

  /** UploadPartCopy of `from`, its body in the file at path or (without one) in from.body. */
  async #copyPart(request: http.IncomingMessage, response: http.ServerResponse, home: BodyHome, uploadId: string, partNumberText: string, from: EmulatorObject, path: string | undefined): Promise<void> {
    const upload = this.#store.multipartUploads.get(uploadId);
    if (!upload) throw noSuchUpload();
    const partNumber = copiedPartNumber(partNumberText);
    checkCopySourceIfMatch(request, from);
    const { start, end } = copiedRange(request, from.contentLength);
    const checksum = partChecksum(upload.checksumAlgorithm);
    if (!path) {
      // fauxqs's store keeps the part (emulator-multipart.ts moves it to a file), with its checksum for the composite one.
      const bytes = from.body.subarray(start, end + 1);
      checksum?.update(bytes);
      const value = checksum?.digest();
      const { etag } = this.#store.uploadPart(uploadId, partNumber, bytes, value);
      return answerXml(response, copyPartResultXml(etag, checksum && value ? { element: checksum.element, value } : undefined));
    }
    const file = await copyRange(openBody(path), start, end, partPath(home, uploadId, partNumber), home.durable, checksum);
    const kept = this.#store.multipartUploads.get(uploadId);
    if (!kept) {
      rmSync(file.path, { force: true });
      throw noSuchUpload();
    }
    recordPartInFile(kept.parts, partNumber, file.path, file.size, file.etag, file.checksum);
    answerXml(response, copyPartResultXml(file.etag, checksum && file.checksum ? { element: checksum.element, value: file.checksum } : undefined));
  }
}

function answerXml(response: http.ServerResponse, xml: string): void {
  const bytes = Buffer.from(xml, "utf8");
  response.writeHead(200, { "content-type": "application/xml", "content-length": String(bytes.length), "x-amz-request-id": requestId(), "x-amz-id-2": "tidemark-local" });
  response.end(bytes);
}

/** Streams bytes [start, end] of the file at path as the answer (NoSuchKey when the file is gone). */
export async function sendFile(response: http.ServerResponse, status: number, headers: http.OutgoingHttpHeaders, path: string, start: number, end: number): Promise<void> {
  const fd = openBody(path);
  const length = Math.max(0, end - start + 1);
  response.writeHead(status, { ...headers, "content-length": String(length), "x-amz-request-id": requestId(), "x-amz-id-2": "tidemark-local" });
  if (length === 0) {
    closeSync(fd);
    response.end();
    return;
  }
  await pipeline(createReadStream("", { fd, start, end, highWaterMark: 1024 * 1024 }), response);
}

function fail(response: http.ServerResponse, error: unknown): void {
  if (response.headersSent) {
    response.destroy(error instanceof Error ? error : undefined);
    return;
  }
  const answer = answerOf(error) ?? new S3ErrorAnswer("InternalError", `the local cloud failed to serve a body from its file: ${error instanceof Error ? error.message : String(error)}`, 500);
  const bytes = Buffer.from(errorXml(answer), "utf8");
  response.writeHead(answer.status, { "content-type": "application/xml", "content-length": String(bytes.length), "x-amz-request-id": requestId() });
  response.end(bytes);
}

/**
 * Makes server (fauxqs's own HTTP server) answer the reads and copies of
 * bodies in files from their files; every other request goes on to fauxqs.
 */
export function serveBodiesFromFiles(server: http.Server, store: FileBodyStore, options: FileBodyOptions = {}): void {
  const files = new FileBodyServer(store, options);
  const fauxqs = server.listeners("request");
  server.removeAllListeners("request");
  server.on("request", (request: http.IncomingMessage, response: http.ServerResponse) => {
    const answer = files.answerFor(request);
    if (!answer) {
      for (const listener of fauxqs) Reflect.apply(listener, server, [request, response]);
      return;
    }
    request.resume();
    answer(response).catch((error: unknown) => fail(response, error));
  });
}
