// The target store: where the applier keeps the live mirror, checkpoints and
// everything else of DESIGN 5. One contract, two implementations (memory, S3);
// both pass test/store-contract.ts.

import { SHA256_PATTERN } from "../../contract/manifest-entry.ts";

export interface StoredObject {
  readonly key: string;
  readonly body: Buffer;
  /** User metadata, lower-case keys. */
  readonly meta: Record<string, string>;
}

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  /** The store's content tag (S3: the ETag; a metadata-only copy keeps it). */
  readonly etag?: string;
  /** When the object was last written (a copy onto itself counts). */
  readonly lastModified?: Date;
}

/** What head tells besides the size: the metadata, and the version on a versioned bucket. */
export interface ObjectHead extends ObjectInfo {
  readonly meta: Record<string, string>;
  readonly versionId?: string;
  /**
   * SHA-256 (hex) of the whole object as the store itself computed or checked
   * it when the object was written; absent when it keeps none, keeps one per
   * part, or only records what the writer claimed (an emulator).
   */
  readonly checksumSha256?: string;
}

/** What a write (put, copy) made: the new object's version on a versioned store, and its ETag. */
export interface WriteResult {
  /** The version the write created; absent on an unversioned store. */
  readonly versionId?: string;
  readonly etag?: string;
}

export interface PutOptions {
  /**
   * The body's SHA-256 (64 lower-case hex digits), which the caller has just computed from these bytes: sent as the
   * write's checksum instead of hashing the body again. The store still checks the body against it: S3 refuses a
   * single request whose body differs, and a put in parts (a body over MULTIPART_THRESHOLD) is completed only when the
   * whole body's SHA-256 is this one (else ContentMismatchError, and the upload is aborted). A hash in any other form
   * is refused before anything is sent (givenSha256).
   */
  readonly sha256?: string;
}

/**
 * PutOptions.sha256, checked to be 64 lower-case hex digits. A caller's hash in another form is a bug to name here:
 * S3 would answer with a BadDigest that names nothing, hex decoding would stop silently at the first bad digit, and
 * upper-case digits would pass S3 but not the memory store.
 */
export function givenSha256(options: PutOptions): string | undefined {
  const { sha256 } = options;
  if (sha256 !== undefined && !SHA256_PATTERN.test(sha256)) {
    throw new TypeError(`internal: PutOptions.sha256 must be 64 lower-case hex digits, not ${JSON.stringify(String(sha256).slice(0, 80))}`);
  }
  return sha256;
}

export interface TargetStore {
  /** The object at key (that version of it, when given), or undefined when there is none. Fails only when the store cannot be reached or read. */
  get(key: string, versionId?: string): Promise<StoredObject | undefined>;
  /** Size, metadata and version of the object at key without its body, or undefined when there is none. */
  head(key: string): Promise<ObjectHead | undefined>;
  /** Writes (replaces) the object at key with body and metadata; resolves to the version and ETag written. */
  put(key: string, body: Uint8Array, meta?: Record<string, string>, options?: PutOptions): Promise<WriteResult>;
  /**
   * Copies the object at from to key to, replacing its metadata with meta; throws ObjectNotFoundError when from is
   * missing, and SourceChangedError when options.ifMatch is given and from's ETag is no longer that one. Resolves to
   * the version and ETag written at to.
   */
  copy(from: string, to: string, meta: Record<string, string>, options?: CopyOptions): Promise<WriteResult>;
  /** The SHA-256 (hex) of the object's content and the ETag of the version it belongs to, or undefined when there is none. */
  contentSha256(key: string): Promise<ContentHash | undefined>;
  /** Removes the object at key; removing a missing object succeeds. */
  delete(key: string): Promise<void>;
  /** Every object whose key starts with prefix, each once, in S3's key order (UTF-8 bytes, key-order.ts); throws BrokenListingError when the store's listing proves incomplete. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /**
   * SHA-256 (hex) and size of the object's bytes (of that version, when
   * given), read as a stream so that no object is held in memory whole;
   * undefined when there is none. Stores that cannot stream leave it out.
   */
  hash?(key: string, versionId?: string): Promise<{ sha256: string; size: number } | undefined>;
  /** True when the store keeps replaced versions (S3 bucket versioning enabled): old content stays readable by version id. */
  versioned(): Promise<boolean>;
  /**
   * The object's bytes (of that version; [offset, offset + length) when given) as a stream, with its metadata,
   * or undefined when there is none. Nothing is held whole in memory; a caller that does not read the body to its
   * end calls discard(). Stores that cannot stream leave it out.
   */
  readStream?(key: string, options?: ReadStreamOptions): Promise<ObjectStream | undefined>;
  /** Bytes [offset, offset + length) of the object at key (fewer past its end), or undefined when there is none. Stores that cannot read ranges leave it out. */
  getRange?(key: string, offset: number, length: number): Promise<Buffer | undefined>;
  /**
   * Writes key from body.read, called in order (a few ranges at once) and
   * never for the whole body at once, and only when those bytes have body.sha256: otherwise throws
   * ContentMismatchError and key keeps what it held. Stores that cannot stream leave it out.
   */
  putStreamed?(key: string, body: StreamedBody, meta: Record<string, string>): Promise<WriteResult>;
}

export interface ReadStreamOptions {
  readonly versionId?: string;
  /** With length: only these bytes (length > 0). */
  readonly offset?: number;
  readonly length?: number;
  /** Only while the object's ETag is this one; else SourceChangedError (an unversioned bucket's later parts read what the first did). */
  readonly ifMatch?: string;
}

/** An object's body as TargetStore.readStream gives it. */
export interface ObjectStream {
  /** The whole object's size (not the range's). */
  readonly size: number;
  /** User metadata, lower-case keys. */
  readonly meta: Record<string, string>;
  /** The version read, on a versioned store. */
  readonly versionId?: string;
  /** The ETag of the object read, where the store tells it. */
  readonly etag?: string;
  readonly body: AsyncIterable<Uint8Array>;
  /** Releases the connection of a body not read to its end. */
  discard(): void;
}

/** A body written piece by piece (TargetStore.putStreamed). */
export interface StreamedBody {
  readonly size: number;
  /** SHA-256 (hex) the bytes must have for the write to take place. */
  readonly sha256: string;
  /** The bytes at [offset, offset + length), each range asked for once, in increasing order; a few may be read at once. */
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * Where the body is mostly another object's bytes (a file's previous
   * version): a store that copies parts server-side may copy the parts of
   * which untouched() is true from key, instead of uploading them. Every
   * part is still read, for the SHA-256 check.
   */
  readonly copyFrom?: { readonly key: string; untouched(offset: number, length: number): boolean };
}

/** A streamed write's bytes did not have the SHA-256 they had to: nothing was written. */
export class ContentMismatchError extends Error {
  override name = "ContentMismatchError";
  constructor(key: string, expected: string, got: string) {
    super(`the bytes for ${key} have sha256 ${got}, not ${expected}; nothing was written`);
  }
}

export interface CopyOptions {
  /** Copy only the version with this ETag (S3's x-amz-copy-source-if-match). */
  readonly ifMatch?: string;
}

/** What an object holds, as far as a check needs it: its content's SHA-256, its size, and the ETag of that version. */
export interface ContentHash {
  readonly sha256: string;
  readonly size: number;
  readonly etag: string;
}

/** A conditional copy (or read) found another version at the source than the one it was asked for. */
export class SourceChangedError extends Error {
  override name = "SourceChangedError";
  readonly key: string;
  constructor(key: string, etag: string, what = "nothing was copied") {
    super(`${key} changed after it was checked (its ETag is no longer ${etag}); ${what}`);
    this.key = key;
  }
}

export class ObjectNotFoundError extends Error {
  override name = "ObjectNotFoundError";
  readonly key: string;
  constructor(key: string) {
    super(`no object at ${key}`);
    this.key = key;
  }
}
