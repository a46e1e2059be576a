// In-memory target store: the reference implementation of the TargetStore
// contract, and the fast store for unit tests. With `versioned`, replaced and
// deleted objects stay readable by version id, as on a versioned S3 bucket.

import { createHash } from "node:crypto";
import { USER_METADATA_LIMIT_BYTES, userMetadataBytes } from "../../contract/link-meta.ts";
import { compareKeys } from "./key-order.ts";
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

type Versioned = StoredObject & { versionId?: string; etag: string; lastModified: Date };

/** As S3 refuses it (MetadataTooLarge): a write whose user metadata passes 2 KB; nothing was written. */
export class MetadataTooLargeError extends Error {
  override name = "MetadataTooLargeError";
  constructor(key: string, bytes: number) {
    super(`the metadata for ${key} is ${bytes} bytes, over S3's ${USER_METADATA_LIMIT_BYTES}; nothing was written`);
  }
}

function checkMetadata(key: string, meta: Record<string, string>): void {
  const bytes = userMetadataBytes(meta);
  if (bytes > USER_METADATA_LIMIT_BYTES) throw new MetadataTooLargeError(key, bytes);
}

export class MemoryStore implements TargetStore {
  readonly objects = new Map<string, Versioned>();
  readonly #versions = new Map<string, Versioned>();
  readonly #versioned: boolean;
  #nextVersion = 1;

  constructor(options: { versioned?: boolean } = {}) {
    this.#versioned = options.versioned ?? false;
  }

  async get(key: string, versionId?: string): Promise<StoredObject | undefined> {
    if (versionId !== undefined) return this.#versions.get(`${key}\0${versionId}`);
    return this.objects.get(key);
  }

  async head(key: string): Promise<ObjectHead | undefined> {
    const object = this.objects.get(key);
    // Computed here, from the bytes held: the reference store verifies every write.
    const checksumSha256 = object && createHash("sha256").update(object.body).digest("hex");
    return object && { key, size: object.body.length, meta: { ...object.meta }, ...(object.versionId ? { versionId: object.versionId } : {}), ...(checksumSha256 ? { checksumSha256 } : {}) };
  }

  async put(key: string, body: Uint8Array, meta: Record<string, string> = {}, options: PutOptions = {}): Promise<WriteResult> {
    checkMetadata(key, meta);
    const given = givenSha256(options);
    const bytes = Buffer.from(body);
    // As S3 refuses a body that does not have the checksum sent with it.
    if (given !== undefined) {
      const sha256 = createHash("sha256").update(bytes).digest("hex");
      if (sha256 !== given) throw new ContentMismatchError(key, given, sha256);
    }
    return this.#store({ key, body: bytes, meta: { ...meta }, etag: `"${createHash("md5").update(bytes).digest("hex")}"`, lastModified: new Date() });
  }

  async copy(from: string, to: string, meta: Record<string, string>, options: CopyOptions = {}): Promise<WriteResult> {
    const source = this.objects.get(from);
    if (!source) throw new ObjectNotFoundError(from);
    if (options.ifMatch !== undefined && options.ifMatch !== source.etag) throw new SourceChangedError(from, options.ifMatch);
    checkMetadata(to, meta);
    // As on S3: a copy keeps the content's tag and is written now.
    return this.#store({ key: to, body: source.body, meta: { ...meta }, etag: source.etag, lastModified: new Date() });
  }

  async readStream(key: string, options: ReadStreamOptions = {}): Promise<ObjectStream | undefined> {
    const object = options.versionId !== undefined ? this.#versions.get(`${key}\0${options.versionId}`) : this.objects.get(key);
    if (!object) return undefined;
    if (options.ifMatch !== undefined && options.ifMatch !== object.etag) throw new SourceChangedError(key, options.ifMatch, "nothing more was read");
    const start = options.offset ?? 0;
    const bytes = options.length !== undefined ? object.body.subarray(start, start + options.length) : object.body;
    return {
      size: object.body.length,
      meta: { ...object.meta },
      ...(object.versionId ? { versionId: object.versionId } : {}),
      etag: object.etag,
      // In pieces, as a network body arrives.
      body: (async function* () {
        for (let at = 0; at < bytes.length; at += 65_536) yield bytes.subarray(at, at + 65_536);
      })(),
      discard: () => undefined,
    };
  }

  async getRange(key: string, offset: number, length: number): Promise<Buffer | undefined> {
    return this.objects.get(key)?.body.subarray(offset, offset + length);
  }

  async putStreamed(key: string, body: StreamedBody, meta: Record<string, string>): Promise<WriteResult> {
    const parts: Uint8Array[] = [];
    const step = 1024 * 1024;
    for (let offset = 0; offset < body.size; offset += step) parts.push(await body.read(offset, Math.min(step, body.size - offset)));
    const bytes = Buffer.concat(parts);
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    if (sha256 !== body.sha256) throw new ContentMismatchError(key, body.sha256, sha256);
    return this.put(key, bytes, meta);
  }

  async contentSha256(key: string): Promise<ContentHash | undefined> {
    const object = this.objects.get(key);
    return object && { sha256: createHash("sha256").update(object.body).digest("hex"), size: object.body.length, etag: object.etag };
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((key) => key.startsWith(prefix)).sort(compareKeys);
    for (const key of keys) {
      const object = this.objects.get(key);
      if (object) yield { key, size: object.body.length, etag: object.etag, lastModified: object.lastModified };
    }
  }

  async versioned(): Promise<boolean> {
    return this.#versioned;
  }

  #store(object: Versioned): WriteResult {
    if (!this.#versioned) {
      this.objects.set(object.key, object);
      return { etag: object.etag };
    }
    const versionId = `v${this.#nextVersion++}`;
    const stored = { ...object, versionId };
    this.objects.set(object.key, stored);
    this.#versions.set(`${object.key}\0${versionId}`, stored);
    return { versionId, etag: object.etag };
  }
}
