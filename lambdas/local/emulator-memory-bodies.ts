// An unpersisted fauxqs emulator holds every body in memory, and while it
// copies or joins one, whole copies beside it: replicating a 1 GiB file
// peaked near 12 GiB. This takes the place of its (absent) persistence:
// small bodies stay in memory, bodies over the threshold go to files in a
// temp folder that close() removes, and the emulator's large-body paths
// (emulator-multipart.ts, emulator-file-bodies.ts, emulator-versions.ts) treat
// it as they treat a persisted emulator's folder beside its database.

import { mkdtempSync, renameSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { bodyPath, readBodyFile, registerBodyHome, writeBody, type BodyHome, type PersistedObject } from "./emulator-large-objects.ts";

const EMPTY = Buffer.alloc(0);

/** fauxqs's S3 persistence (its S3PersistenceProvider), bodies only: buckets, uploads and lifecycles live in its store. */
export class MemoryBodies implements BodyHome {
  readonly dir: string;
  readonly largeBodyBytes: number;
  /** A temp folder: nothing in it outlives the emulator. */
  readonly durable = false;
  /** bucket → key → body, for bodies up to the threshold. */
  readonly #small = new Map<string, Map<string, Buffer>>();
  /** bucket → keys whose body is in a file (a small write then costs no file system call). */
  readonly #inFiles = new Map<string, Set<string>>();

  constructor(options: { largeBodyBytes: number }) {
    this.dir = mkdtempSync(join(tmpdir(), "tidemark-emulator-"));
    this.largeBodyBytes = options.largeBodyBytes;
    registerBodyHome(this, this);
  }

  upsertObject(bucket: string, object: PersistedObject): void {
    if (object.body.length <= this.largeBodyBytes) {
      this.#dropFile(bucket, object.key);
      this.#bucket(bucket).set(object.key, object.body);
      return;
    }
    this.#small.get(bucket)?.delete(object.key);
    writeBody(bodyPath(this, bucket, object.key), object.body);
    this.#files(bucket).add(object.key);
  }

  recordInFile(bucket: string, object: PersistedObject, file: string): void {
    const path = bodyPath(this, bucket, object.key);
    mkdirSync(dirname(path), { recursive: true });
    renameSync(file, path);
    this.#small.get(bucket)?.delete(object.key);
    this.#files(bucket).add(object.key);
  }

  readBody(bucket: string, key: string): Buffer {
    const small = this.#small.get(bucket)?.get(key);
    if (small || !this.#inFiles.get(bucket)?.has(key)) return small ?? EMPTY;
    return readBodyFile(bodyPath(this, bucket, key)) ?? EMPTY;
  }

  deleteObject(bucket: string, key: string): void {
    this.#small.get(bucket)?.delete(key);
    this.#dropFile(bucket, key);
  }

  renameObject(bucket: string, sourceKey: string, destKey: string): void {
    if (sourceKey === destKey) return;
    const small = this.#small.get(bucket)?.get(sourceKey);
    this.deleteObject(bucket, destKey);
    if (small) {
      this.#bucket(bucket).set(destKey, small);
      this.#small.get(bucket)?.delete(sourceKey);
    } else if (this.#inFiles.get(bucket)?.delete(sourceKey)) {
      renameSync(bodyPath(this, bucket, sourceKey), bodyPath(this, bucket, destKey));
      this.#files(bucket).add(destKey);
    }
  }

  completeMultipartUpload(_uploadId: string, bucket: string, object: PersistedObject): void {
    this.upsertObject(bucket, object);
  }

  deleteObjectsByBucket(bucket: string): void {
    this.#small.delete(bucket);
    this.#inFiles.delete(bucket);
    rmSync(join(this.dir, bucket), { recursive: true, force: true });
  }

  deleteBucket(bucket: string): void {
    this.deleteObjectsByBucket(bucket);
  }

  deleteAllObjects(): void {
    this.#small.clear();
    this.#inFiles.clear();
    rmSync(this.dir, { recursive: true, force: true });
    mkdirSync(this.dir, { recursive: true });
  }

  purgeAll(): void {
    this.deleteAllObjects();
  }

  /** Removes every body file: the emulator is stopping. */
  close(): void {
    this.#small.clear();
    this.#inFiles.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }

  // What fauxqs keeps in its own store (buckets, uploads, lifecycles) has no row here.
  insertBucket(): void {}
  saveBucketLifecycleConfiguration(): void {}
  deleteBucketLifecycleConfiguration(): void {}
  insertMultipartUpload(): void {}
  upsertMultipartPart(): void {}
  deleteMultipartUpload(): void {}
  deleteAllMultipartUploads(): void {}
  loadS3(): void {}

  #bucket(bucket: string): Map<string, Buffer> {
    let keys = this.#small.get(bucket);
    if (!keys) this.#small.set(bucket, (keys = new Map()));
    return keys;
  }

  #files(bucket: string): Set<string> {
    let keys = this.#inFiles.get(bucket);
    if (!keys) this.#inFiles.set(bucket, (keys = new Set()));
    return keys;
  }

  #dropFile(bucket: string, key: string): void {
    if (this.#inFiles.get(bucket)?.delete(key)) rmSync(bodyPath(this, bucket, key), { force: true });
  }
}
