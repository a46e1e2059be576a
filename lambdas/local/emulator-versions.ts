// The versions of a versioned bucket in the local cloud. fauxqs keeps one
// object per key; on a versioned emulator (startEmulator({ versioned: true }))
// its store keeps each object it replaces or deletes as a noncurrent version,
// and a DeleteObject leaves a delete marker, as S3 does with versioning
// Enabled. fauxqs's own map stays what it is: the current objects (so its
// listing, GET and HEAD answer for them); this module holds every version's
// id and the noncurrent ones. The HTTP side (version ids in answers, reads of
// older versions, ListObjectVersions) is emulator-versioned-bucket.ts.
//
// On a persisted emulator the versions are rows of a table in fauxqs's
// database, a noncurrent body in its row (in memory on an unpersisted one)
// or, above the large-body threshold, in a file of its own: a hard link to
// the current object's body file made before fauxqs replaces or removes that
// file, so keeping a large version copies no bytes.
// Objects written while the emulator was not versioned have the version id
// "null", as on S3.

import { createHash, randomUUID } from "node:crypto";
import { copyFileSync, existsSync, linkSync, mkdirSync, rmSync } from "node:fs";
import { DatabaseSync, type SQLOutputValue } from "node:sqlite";
import { dirname, join } from "node:path";
import { bodyPath, homeOf, isPersistenceManager, type BodyHome } from "./emulator-large-objects.ts";
import { fauxqsPrototype, s3StoreOf } from "./fauxqs-internals.ts";

/** An object as fauxqs's S3 store (dist/s3/s3Store.js) holds it; `body` is empty on a persisted emulator. */
export interface EmulatorObject {
  readonly key: string;
  readonly body: Buffer;
  readonly contentType: string;
  readonly contentLength: number;
  readonly etag: string;
  readonly lastModified: Date;
  readonly metadata: Record<string, string>;
  readonly parts?: readonly { readonly partNumber: number; readonly offset: number; readonly length: number }[];
  readonly contentLanguage?: string;
  readonly contentDisposition?: string;
  readonly cacheControl?: string;
  readonly contentEncoding?: string;
  readonly checksumAlgorithm?: string;
  readonly checksumValue?: string;
  readonly checksumType?: string;
  readonly partChecksums?: readonly string[];
}

export interface SystemMetadata {
  readonly contentLanguage?: string;
  readonly contentDisposition?: string;
  readonly cacheControl?: string;
  readonly contentEncoding?: string;
}

export interface ChecksumData {
  readonly algorithm: string;
  readonly value: string;
  readonly type: string;
  readonly partChecksums?: readonly string[];
}

/** The part of fauxqs's S3 store that versioning wraps and reads. */
export interface EmulatorS3Store {
  readonly buckets: Map<string, Map<string, EmulatorObject>>;
  readonly multipartUploads: Map<string, { readonly bucket: string; readonly key: string }>;
  readonly persistence?: unknown;
  putObject(bucket: string, key: string, body: Buffer, contentType?: string, metadata?: Record<string, string>, systemMetadata?: SystemMetadata, checksumData?: ChecksumData): EmulatorObject;
  getObject(bucket: string, key: string): EmulatorObject;
  completeMultipartUpload(uploadId: string, specs: unknown): EmulatorObject;
  deleteObject(bucket: string, key: string): void;
  emptyBucket(name: string): void;
}

/** One version of a key: an object or a delete marker. */
export interface Version {
  readonly versionId: string;
  readonly deleteMarker: boolean;
  readonly lastModified: Date;
  /** "" for a delete marker. */
  readonly etag: string;
  readonly size: number;
  /** Set once the object is replaced or deleted: its fields, its body when in memory, its file when in one. */
  noncurrent?: { readonly object: EmulatorObject; readonly file?: string };
  /** Row id in the versions table (persisted emulators). */
  row?: number;
}

/** What was kept of a current object before fauxqs replaced it: its body, or a link to its file. */
interface Kept {
  readonly versionId: string;
  readonly object: EmulatorObject;
  readonly body?: Buffer;
  readonly file?: string;
}

const NULL_VERSION = "null";
const EMPTY = Buffer.alloc(0);

/** Opaque, URL-safe and unique, 32 characters like S3's (a random UUID's hex digits: drawn from a pool, not a system call each). */
function newVersionId(): string {
  return randomUUID().replaceAll("-", "");
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tidemark_s3_versions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  bucket TEXT NOT NULL,
  key TEXT NOT NULL,
  version_id TEXT NOT NULL,
  delete_marker INTEGER NOT NULL,
  last_modified TEXT NOT NULL,
  etag TEXT NOT NULL,
  size INTEGER NOT NULL,
  object TEXT,
  body BLOB,
  in_file INTEGER NOT NULL DEFAULT 0,
  UNIQUE (bucket, key, version_id)
)`;

function text(row: Record<string, SQLOutputValue>, name: string): string {
  const value = row[name];
  if (typeof value !== "string") throw new Error(`internal: versions table column ${name} is not text`);
  return value;
}

function integer(row: Record<string, SQLOutputValue>, name: string): number {
  const value = row[name];
  if (typeof value !== "number") throw new Error(`internal: versions table column ${name} is not a number`);
  return value;
}

function isEmulatorObject(value: unknown): value is EmulatorObject {
  if (typeof value !== "object" || value === null) return false;
  const has = (name: string, type: string) => name in value && typeof Reflect.get(value, name) === type;
  return has("key", "string") && has("contentType", "string") && has("contentLength", "number") && has("etag", "string") && has("metadata", "object") && "lastModified" in value && value.lastModified instanceof Date;
}

/** The object a row keeps for a noncurrent version (its body is elsewhere). */
function objectFromJson(json: string): EmulatorObject {
  const fields: unknown = JSON.parse(json, (name, value: unknown) => (name === "lastModified" && typeof value === "string" ? new Date(value) : value));
  const object = typeof fields === "object" && fields !== null ? { ...fields, body: EMPTY } : undefined;
  if (!isEmulatorObject(object)) throw new Error("internal: a noncurrent version's row holds no object");
  return object;
}

function objectToJson(object: EmulatorObject): string {
  const { body: _body, ...fields } = object;
  return JSON.stringify(fields);
}

/** The versions table of a persisted emulator, in fauxqs's database. */
class VersionTable {
  readonly #insert;
  readonly #retire;
  readonly #restore;
  readonly #remove;
  readonly #body;
  readonly #all;

  readonly #db: DatabaseSync;

  constructor(db: DatabaseSync) {
    this.#db = db;
    db.exec(SCHEMA);
    this.#insert = db.prepare("INSERT OR REPLACE INTO tidemark_s3_versions (bucket, key, version_id, delete_marker, last_modified, etag, size) VALUES (?, ?, ?, ?, ?, ?, ?)");
    this.#retire = db.prepare("UPDATE tidemark_s3_versions SET object = ?, body = ?, in_file = ? WHERE id = ?");
    this.#restore = db.prepare("UPDATE tidemark_s3_versions SET object = NULL, body = NULL, in_file = 0 WHERE id = ?");
    this.#remove = db.prepare("DELETE FROM tidemark_s3_versions WHERE id = ?");
    this.#body = db.prepare("SELECT body FROM tidemark_s3_versions WHERE id = ?");
    this.#all = db.prepare("SELECT * FROM tidemark_s3_versions ORDER BY id");
  }

  /** Runs writes in one transaction: a first versioned start records every object at once. */
  batch(writes: () => void): void {
    this.#db.exec("BEGIN");
    try {
      writes();
      this.#db.exec("COMMIT");
    } catch (error) {
      this.#db.exec("ROLLBACK");
      throw error;
    }
  }

  insert(bucket: string, key: string, version: Version): number {
    const result = this.#insert.run(bucket, key, version.versionId, version.deleteMarker ? 1 : 0, version.lastModified.toISOString(), version.etag, version.size);
    return Number(result.lastInsertRowid);
  }

  retire(row: number, object: EmulatorObject, body: Buffer | undefined, inFile: boolean): void {
    this.#retire.run(objectToJson(object), body ?? null, inFile ? 1 : 0, row);
  }

  restore(row: number): void {
    this.#restore.run(row);
  }

  remove(row: number): void {
    this.#remove.run(row);
  }

  body(row: number): Buffer {
    const value = this.#body.get(row)?.["body"];
    return value instanceof Uint8Array ? Buffer.from(value.buffer, value.byteOffset, value.byteLength) : EMPTY;
  }

  /** Every row, oldest first, with what a Version needs. */
  *rows(): Iterable<{ bucket: string; key: string; version: Version; inFile: boolean }> {
    for (const row of this.#all.iterate()) {
      const object = row["object"];
      const version: Version = {
        versionId: text(row, "version_id"),
        deleteMarker: integer(row, "delete_marker") === 1,
        lastModified: new Date(text(row, "last_modified")),
        etag: text(row, "etag"),
        size: integer(row, "size"),
        row: integer(row, "id"),
      };
      if (typeof object === "string") version.noncurrent = { object: objectFromJson(object) };
      yield { bucket: text(row, "bucket"), key: text(row, "key"), version, inFile: integer(row, "in_file") === 1 };
    }
  }
}

/** The versions of one fauxqs store's buckets: every bucket of a versioned emulator is versioned. */
export class BucketVersions {
  readonly store: EmulatorS3Store;
  /** bucket → key → versions, newest first. The newest is current unless it is a delete marker. */
  readonly #keys = new Map<string, Map<string, Version[]>>();
  readonly #home: BodyHome | undefined;
  readonly #table: VersionTable | undefined;

  constructor(store: EmulatorS3Store) {
    this.store = store;
    const persistence = store.persistence;
    this.#home = homeOf(persistence);
    const db: unknown = isPersistenceManager(persistence) ? persistence.db : undefined;
    if (isPersistenceManager(persistence) && !(db instanceof DatabaseSync)) throw new Error("internal: fauxqs's database is not a node:sqlite database");
    this.#table = db instanceof DatabaseSync ? new VersionTable(db) : undefined;
    if (this.#table) {
      this.#load(this.#table);
      this.#table.batch(() => this.#adoptCurrentObjects());
    } else {
      this.#adoptCurrentObjects();
    }
  }

  /** The versions of key, newest first (empty when it has none). */
  versions(bucket: string, key: string): readonly Version[] {
    return this.#keys.get(bucket)?.get(key) ?? [];
  }

  /** Every key with versions in bucket. */
  keys(bucket: string): Iterable<[string, readonly Version[]]> {
    return this.#keys.get(bucket)?.entries() ?? [];
  }

  /** Whether bucket holds any version or delete marker (S3 refuses to delete such a bucket). */
  holdsVersions(bucket: string): boolean {
    return [...(this.#keys.get(bucket)?.values() ?? [])].some((versions) => versions.length > 0);
  }

  /** Forgets a deleted bucket. */
  forgetBucket(bucket: string): void {
    this.#keys.delete(bucket);
  }

  /** The body of a noncurrent version, in memory (a large one is read from its file). */
  bodyOf(version: Version, read: (file: string) => Buffer): Buffer {
    const noncurrent = version.noncurrent;
    if (!noncurrent) throw new Error("internal: bodyOf is for noncurrent versions");
    if (noncurrent.file) return read(noncurrent.file);
    if (this.#table && version.row !== undefined) return this.#table.body(version.row);
    return noncurrent.object.body;
  }

  /** Keeps what fauxqs is about to replace or remove at key: the body, or a link to its file. */
  keep(bucket: string, key: string): Kept | undefined {
    const object = this.store.buckets.get(bucket)?.get(key);
    if (!object) return undefined;
    const versionId = this.#currentObject(bucket, key)?.versionId ?? NULL_VERSION;
    const home = this.#home;
    if (!home) return { versionId, object };
    const current = bodyPath(home, bucket, key);
    if (object.contentLength > home.largeBodyBytes && existsSync(current)) {
      const file = this.#versionFile(home, bucket, key, versionId);
      mkdirSync(dirname(file), { recursive: true });
      rmSync(file, { force: true });
      try {
        linkSync(current, file);
      } catch {
        // A file system without hard links: the bytes are copied instead.
        copyFileSync(current, file);
      }
      return { versionId, object, file };
    }
    return { versionId, object, body: object.contentLength > 0 ? home.readBody(bucket, key) : EMPTY };
  }

  /** Undoes keep() when fauxqs refused the write. */
  release(kept: Kept | undefined): void {
    if (kept?.file) rmSync(kept.file, { force: true });
  }

  /** After fauxqs replaced or removed the object kept: it becomes a noncurrent version. */
  retire(bucket: string, key: string, kept: Kept | undefined): void {
    if (!kept) return;
    let version = this.#currentObject(bucket, key);
    if (!version) {
      version = this.#push(bucket, key, { versionId: NULL_VERSION, deleteMarker: false, lastModified: kept.object.lastModified, etag: kept.object.etag, size: kept.object.contentLength });
    }
    // Without a table, a small noncurrent body stays with its object.
    const object = !this.#table && kept.body ? { ...kept.object, body: kept.body } : kept.object;
    version.noncurrent = { object, ...(kept.file ? { file: kept.file } : {}) };
    if (this.#table && version.row !== undefined) this.#table.retire(version.row, kept.object, kept.body, kept.file !== undefined);
  }

  /** The new current object at key: a new version. */
  added(bucket: string, key: string, object: EmulatorObject): Version {
    return this.#push(bucket, key, { versionId: newVersionId(), deleteMarker: false, lastModified: object.lastModified, etag: object.etag, size: object.contentLength });
  }

  /** A delete marker, the key's new current version. */
  addDeleteMarker(bucket: string, key: string): Version {
    return this.#push(bucket, key, { versionId: newVersionId(), deleteMarker: true, lastModified: new Date(), etag: "", size: 0 });
  }

  /**
   * Removes one version for good. When it was the current one, fauxqs's
   * object goes and the next older version, if an object, becomes current.
   * Answers the version removed, or undefined when key has no such version.
   */
  removeVersion(bucket: string, key: string, versionId: string): Version | undefined {
    const versions = this.#keys.get(bucket)?.get(key);
    const index = versions?.findIndex((version) => version.versionId === versionId) ?? -1;
    const version = versions?.[index];
    if (!versions || !version) return undefined;
    const wasCurrentObject = index === 0 && !version.deleteMarker && !version.noncurrent;
    if (wasCurrentObject) deleteUnversioned?.call(this.store, bucket, key);
    versions.splice(index, 1);
    if (version.row !== undefined) this.#table?.remove(version.row);
    if (version.noncurrent?.file) rmSync(version.noncurrent.file, { force: true });
    const next = versions[0];
    if (index === 0 && next?.noncurrent) this.#restore(bucket, key, next);
    if (versions.length === 0) this.#keys.get(bucket)?.delete(key);
    return version;
  }

  /** The current object's version, when key has a current object. */
  #currentObject(bucket: string, key: string): Version | undefined {
    const newest = this.#keys.get(bucket)?.get(key)?.[0];
    return newest && !newest.deleteMarker && !newest.noncurrent ? newest : undefined;
  }

  #push(bucket: string, key: string, version: Version): Version {
    let keys = this.#keys.get(bucket);
    if (!keys) this.#keys.set(bucket, (keys = new Map()));
    let versions = keys.get(key);
    if (!versions) keys.set(key, (versions = []));
    // A "null" version replaces the one before it (S3 keeps at most one per key).
    if (version.versionId === NULL_VERSION) {
      const older = versions.findIndex((v) => v.versionId === NULL_VERSION);
      const removed = older >= 0 ? versions.splice(older, 1)[0] : undefined;
      if (removed?.row !== undefined) this.#table?.remove(removed.row);
      if (removed?.noncurrent?.file) rmSync(removed.noncurrent.file, { force: true });
    }
    if (this.#table) version.row = this.#table.insert(bucket, key, version);
    versions.unshift(version);
    return version;
  }

  /** A noncurrent version becomes fauxqs's current object again. */
  #restore(bucket: string, key: string, version: Version): void {
    const noncurrent = version.noncurrent;
    const objects = this.store.buckets.get(bucket);
    if (!noncurrent || !objects) return;
    const home = this.#home;
    if (!home) {
      objects.set(key, noncurrent.object);
    } else if (noncurrent.file) {
      home.recordInFile(bucket, noncurrent.object, noncurrent.file);
      objects.set(key, { ...noncurrent.object, body: EMPTY });
    } else {
      home.upsertObject(bucket, { ...noncurrent.object, body: this.bodyOf(version, () => EMPTY) });
      objects.set(key, { ...noncurrent.object, body: EMPTY });
    }
    version.noncurrent = undefined;
    if (version.row !== undefined) this.#table?.restore(version.row);
  }

  #versionFile(home: BodyHome, bucket: string, key: string, versionId: string): string {
    // Bucket names never start with "_": no clash with a bucket's folder.
    return join(home.dir, "_versions", bucket, `${createHash("sha256").update(key).digest("hex")}.${versionId}`);
  }

  #load(table: VersionTable): void {
    for (const { bucket, key, version, inFile } of table.rows()) {
      if (inFile && version.noncurrent && this.#home) {
        version.noncurrent = { object: version.noncurrent.object, file: this.#versionFile(this.#home, bucket, key, version.versionId) };
      }
      let keys = this.#keys.get(bucket);
      if (!keys) this.#keys.set(bucket, (keys = new Map()));
      let versions = keys.get(key);
      if (!versions) keys.set(key, (versions = []));
      versions.unshift(version);
    }
  }

  /**
   * Matches fauxqs's current objects with the versions kept: one written or
   * removed while the emulator was not versioned drops the stale current
   * version, and an object without a version gets the version "null".
   */
  #adoptCurrentObjects(): void {
    for (const [bucket, keys] of this.#keys) {
      for (const [key, versions] of keys) {
        const newest = versions[0];
        const object = this.store.buckets.get(bucket)?.get(key);
        const matches = object && newest && +newest.lastModified === +object.lastModified && newest.etag === object.etag;
        if (newest && !newest.deleteMarker && !newest.noncurrent && !matches) {
          versions.shift();
          if (newest.row !== undefined) this.#table?.remove(newest.row);
        }
      }
    }
    for (const [bucket, objects] of this.store.buckets) {
      for (const [key, object] of objects) {
        if (this.#currentObject(bucket, key)) continue;
        this.#push(bucket, key, { versionId: NULL_VERSION, deleteMarker: false, lastModified: object.lastModified, etag: object.etag, size: object.contentLength });
      }
    }
  }
}

const versioning = new WeakMap<object, BucketVersions>();

/** True when store is a versioned emulator's (versionStore): an overwrite keeps the old object as a version, no copy. */
export function isVersionedStore(store: object): boolean {
  return versioning.has(store);
}

/** Wraps the writes of fauxqs's store: on a versioned store, what they replace or remove stays as a version. */
async function patchStore(): Promise<void> {
  const prototype = await fauxqsPrototype<EmulatorS3Store>("./s3/s3Store.js", "S3Store", ["putObject", "getObject", "completeMultipartUpload", "deleteObject"]);
  const original = {
    putObject: prototype.putObject,
    completeMultipartUpload: prototype.completeMultipartUpload,
    deleteObject: prototype.deleteObject,
  };
  deleteUnversioned = original.deleteObject;

  /** Runs write, which replaces or removes key's current object, keeping that object as a version. */
  function keeping<T>(versions: BucketVersions, bucket: string, key: string, write: () => T): T {
    const kept = versions.keep(bucket, key);
    let result: T;
    try {
      result = write();
    } catch (error) {
      versions.release(kept);
      throw error;
    }
    versions.retire(bucket, key, kept);
    return result;
  }

  prototype.putObject = function putObjectVersioned(bucket, key, ...rest) {
    const versions = versioning.get(this);
    if (!versions) return original.putObject.call(this, bucket, key, ...rest);
    const object = keeping(versions, bucket, key, () => original.putObject.call(this, bucket, key, ...rest));
    versions.added(bucket, key, object);
    return object;
  };
  prototype.completeMultipartUpload = function completeMultipartUploadVersioned(uploadId, specs) {
    const versions = versioning.get(this);
    const upload = this.multipartUploads.get(uploadId);
    if (!versions || !upload) return original.completeMultipartUpload.call(this, uploadId, specs);
    const object = keeping(versions, upload.bucket, upload.key, () => original.completeMultipartUpload.call(this, uploadId, specs));
    versions.added(upload.bucket, upload.key, object);
    return object;
  };
  // DeleteObject (and each key of DeleteObjects) without a version id: a delete marker.
  prototype.deleteObject = function deleteObjectVersioned(bucket, key) {
    const versions = versioning.get(this);
    if (!versions) return original.deleteObject.call(this, bucket, key);
    keeping(versions, bucket, key, () => original.deleteObject.call(this, bucket, key));
    versions.addDeleteMarker(bucket, key);
  };
}

/** fauxqs's own DeleteObject, which removes the current object and keeps nothing. */
let deleteUnversioned: EmulatorS3Store["deleteObject"] | undefined;
let patched: Promise<void> | undefined;

/** Makes the S3 store of a started fauxqs server versioned, and answers its versions. */
export async function versionStore(server: { emptyBucket(name: string): void }): Promise<BucketVersions> {
  patched ??= patchStore();
  await patched;
  const store = await s3StoreOf<EmulatorS3Store>(server, ["putObject", "getObject", "deleteObject"]);
  const versions = new BucketVersions(store);
  versioning.set(store, versions);
  return versions;
}
