// A persisted fauxqs emulator (`tidemark local`) keeps each object's bytes in
// a BLOB of its SQLite database, and SQLite refuses anything over
// 1,000,000,000 bytes ("string or blob too big"). So staging a file of about
// 1 GiB failed: CompleteMultipartUpload answered 500 (the SDK reports an "XML
// parse error"), and the SDK's retry got InvalidPart, since the emulator had
// already dropped the parts. Here bodies above LARGE_BODY_BYTES are kept in
// files of their own beside the database, named by a hash of bucket and key
// (any key, any case, any length fits), with an empty BLOB in the row; they are
// read back in slices, since one read stops at 2 GiB.
//
// Parts of a multipart upload are not written to the database (1 GiB of
// parts cost as much again in database writes, then were deleted at once):
// an emulator restarted in the middle of an upload has lost it, and the
// uploader (agent or applier) starts it again, as after any failed upload.
//
// An unpersisted emulator keeps its large bodies in files too, in a temp
// folder (emulator-memory-bodies.ts); both kinds are a BodyHome. Uploads in
// parts are joined on disk (emulator-multipart.ts), and reads and copies of
// a body in a file are served from the file (emulator-file-bodies.ts).

import { createHash, randomUUID } from "node:crypto";
import { closeSync, existsSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, join } from "node:path";
import { fauxqsPrototype } from "./fauxqs-internals.ts";

/** Bodies above this go to files: far below SQLite's limit, and big rows slow the database for everything else. */
export const LARGE_BODY_BYTES = 64 * 1024 * 1024;
/** Bytes per read or write system call (Node's limit is 2 GiB). */
const SLICE = 256 * 1024 * 1024;

export interface PersistedObject {
  readonly key: string;
  readonly body: Buffer;
}

/** Where a store keeps the bodies over its threshold, each in a file of its own: <dir>/<bucket>/<sha256 of the key>. */
export interface BodyHome {
  readonly dir: string;
  /** Bodies above this many bytes are kept in files. */
  readonly largeBodyBytes: number;
  /** Whether its files must survive a crash (fsync'd): those of a persisted emulator. */
  readonly durable: boolean;
  /** An object's body, read whole (from its file for a large one). */
  readBody(bucket: string, key: string): Buffer;
  /** Keeps an object's body: in a file when it is large. */
  upsertObject(bucket: string, object: PersistedObject): void;
  /** Records an object whose body is the file at `file`, written by the caller; the file moves to its place. */
  recordInFile(bucket: string, object: PersistedObject, file: string): void;
  /** Forgets an upload's row, if the store keeps one. */
  deleteMultipartUpload(uploadId: string): void;
}

/** Thresholds other than LARGE_BODY_BYTES, by persistence (startEmulator's largeBodyBytes, for tests). */
const thresholds = new WeakMap<object, number>();
const homes = new WeakMap<object, BodyHome>();

/** A persistence that is its own BodyHome (emulator-memory-bodies.ts). */
export function registerBodyHome(persistence: object, home: BodyHome): void {
  homes.set(persistence, home);
}

/** Sets the threshold of a persisted emulator's bodies. */
export function setLargeBodyBytes(persistence: PersistenceManager, bytes: number): void {
  thresholds.set(persistence, bytes);
}

function largeBodyBytesOf(persistence: object): number {
  return thresholds.get(persistence) ?? LARGE_BODY_BYTES;
}

/** The BodyHome of a fauxqs store's persistence, or undefined when it has none. */
export function homeOf(persistence: unknown): BodyHome | undefined {
  if (typeof persistence !== "object" || persistence === null) return undefined;
  const home = homes.get(persistence);
  if (home || !isPersistenceManager(persistence)) return home;
  const adapter: BodyHome = {
    dir: bodiesDir(persistence),
    durable: true,
    get largeBodyBytes() {
      return largeBodyBytesOf(persistence);
    },
    readBody: (bucket, key) => persistence.readBody(bucket, key),
    upsertObject: (bucket, object) => persistence.upsertObject(bucket, object),
    recordInFile: (bucket, object, file) => recordObjectInFile(persistence, bucket, object, file),
    deleteMultipartUpload: (uploadId) => persistence.deleteMultipartUpload(uploadId),
  };
  homes.set(persistence, adapter);
  return adapter;
}

/** The part of fauxqs's SQLite persistence (dist/persistence.js) that stores object bodies. */
export interface PersistenceManager {
  readonly db: { location(): string | null };
  upsertObject(bucket: string, object: PersistedObject): void;
  readBody(bucket: string, key: string): Buffer;
  deleteObject(bucket: string, key: string): void;
  renameObject(bucket: string, sourceKey: string, destKey: string): void;
  upsertMultipartPart(uploadId: string, part: unknown): void;
  deleteMultipartUpload(uploadId: string): void;
  deleteObjectsByBucket(bucket: string): void;
  deleteAllObjects(): void;
  clearMessagesAndObjects(): void;
  purgeAll(): void;
}

/** fauxqs's SQLite persistence, the one whose bodies this module moves to files. */
export function isPersistenceManager(value: unknown): value is PersistenceManager {
  return typeof value === "object" && value !== null && "db" in value && typeof value.db === "object" && value.db !== null && "location" in value.db && "upsertObject" in value;
}

function bodiesDir(persistence: PersistenceManager): string {
  const location = persistence.db.location();
  if (!location) throw new Error("the emulator's database has no file: it cannot keep large objects beside it");
  return join(dirname(location), "large-objects");
}

/** The file of key's body in home (there is one only for a large body). */
export function bodyPath(home: BodyHome, bucket: string, key: string): string {
  return join(home.dir, bucket, createHash("sha256").update(key).digest("hex"));
}

let wholeReads = 0;

/** How many times a body in a file was read whole into memory in this process (the paths that do not stream it). */
export function bodyFilesReadWhole(): number {
  return wholeReads;
}

/** Temp file, fsync, rename: a crash leaves the old body or the new one. */
export function writeBody(path: string, body: Buffer): void {
  mkdirSync(dirname(path), { recursive: true });
  const temp = `${path}.${randomUUID()}.tmp`;
  const fd = openSync(temp, "w");
  try {
    for (let offset = 0; offset < body.length; ) offset += writeSync(fd, body, offset, Math.min(SLICE, body.length - offset));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temp, path);
}

/** The body in the file at path, or undefined when there is none. */
export function readBodyFile(path: string): Buffer | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (error) {
    if (error instanceof Error && "code" in error && error.code === "ENOENT") return undefined;
    throw error;
  }
  try {
    wholeReads += 1;
    const body = Buffer.allocUnsafe(fstatSync(fd).size);
    for (let offset = 0; offset < body.length; ) {
      const read = readSync(fd, body, offset, Math.min(SLICE, body.length - offset), offset);
      if (read === 0) throw new Error(`${path} ended early: ${offset} of ${body.length} bytes`);
      offset += read;
    }
    return body;
  } finally {
    closeSync(fd);
  }
}

async function patchLargeBodies(): Promise<void> {
  const prototype = await fauxqsPrototype<PersistenceManager>("./persistence.js", "PersistenceManager", [
    "upsertObject",
    "readBody",
    "deleteObject",
    "renameObject",
    "upsertMultipartPart",
    "deleteMultipartUpload",
    "deleteObjectsByBucket",
    "deleteAllObjects",
    "clearMessagesAndObjects",
    "purgeAll",
  ]);
  const original = {
    upsertObject: prototype.upsertObject,
    readBody: prototype.readBody,
    deleteObject: prototype.deleteObject,
    renameObject: prototype.renameObject,
    deleteObjectsByBucket: prototype.deleteObjectsByBucket,
    deleteAllObjects: prototype.deleteAllObjects,
    clearMessagesAndObjects: prototype.clearMessagesAndObjects,
    purgeAll: prototype.purgeAll,
  };
  upsertRow = original.upsertObject;
  const removeAll = (persistence: PersistenceManager) => rmSync(bodiesDir(persistence), { recursive: true, force: true });
  const pathOf = (persistence: PersistenceManager, bucket: string, key: string) => join(bodiesDir(persistence), bucket, createHash("sha256").update(key).digest("hex"));

  prototype.upsertObject = function upsertObject(bucket, object) {
    const path = pathOf(this, bucket, object.key);
    if (object.body.length <= largeBodyBytesOf(this)) {
      // A small object replacing a large one: its file must not answer for it.
      rmSync(path, { force: true });
      original.upsertObject.call(this, bucket, object);
      return;
    }
    writeBody(path, object.body);
    original.upsertObject.call(this, bucket, { ...object, body: Buffer.alloc(0) });
  };
  // fauxqs reads a body only for an object whose length is not 0: an empty row is one kept in a file.
  prototype.readBody = function readLargeOrSmallBody(bucket, key) {
    const body = original.readBody.call(this, bucket, key);
    return body.length > 0 ? body : (readBodyFile(pathOf(this, bucket, key)) ?? body);
  };
  prototype.deleteObject = function deleteObject(bucket, key) {
    original.deleteObject.call(this, bucket, key);
    rmSync(pathOf(this, bucket, key), { force: true });
  };
  prototype.renameObject = function renameObject(bucket, sourceKey, destKey) {
    original.renameObject.call(this, bucket, sourceKey, destKey);
    const from = pathOf(this, bucket, sourceKey);
    if (sourceKey !== destKey && existsSync(from)) renameSync(from, pathOf(this, bucket, destKey));
  };
  prototype.upsertMultipartPart = function keepPartInMemoryOnly() {};
  prototype.deleteObjectsByBucket = function deleteObjectsByBucket(bucket) {
    original.deleteObjectsByBucket.call(this, bucket);
    rmSync(join(bodiesDir(this), bucket), { recursive: true, force: true });
  };
  prototype.deleteAllObjects = function deleteAllObjects() {
    original.deleteAllObjects.call(this);
    removeAll(this);
  };
  prototype.clearMessagesAndObjects = function clearMessagesAndObjects() {
    original.clearMessagesAndObjects.call(this);
    removeAll(this);
  };
  prototype.purgeAll = function purgeAll() {
    original.purgeAll.call(this);
    removeAll(this);
  };
}

/** The database row of an object whose body is the file at `file`, written by the caller; the file moves to its place. */
function recordObjectInFile(persistence: PersistenceManager, bucket: string, object: PersistedObject, file: string): void {
  const path = join(bodiesDir(persistence), bucket, createHash("sha256").update(object.key).digest("hex"));
  mkdirSync(dirname(path), { recursive: true });
  renameSync(file, path);
  if (!upsertRow) throw new Error("internal: large bodies are not patched in yet");
  upsertRow.call(persistence, bucket, { ...object, body: Buffer.alloc(0) });
}

let upsertRow: PersistenceManager["upsertObject"] | undefined;
let patched: Promise<void> | undefined;

/** Makes every persisted fauxqs emulator in this process keep large bodies in files; safe to call many times. */
export function keepLargeBodiesInFiles(): Promise<void> {
  patched ??= patchLargeBodies();
  return patched;
}
