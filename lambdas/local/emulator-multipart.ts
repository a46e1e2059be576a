// fauxqs holds a multipart upload's parts in memory and joins them into one
// Buffer at CompleteMultipartUpload: twice the object's size at the peak, 2 GiB
// for a 1 GiB file. Here each part goes to a file as it arrives instead (a
// copied part too: emulator-file-bodies.ts), and an object over the store's
// large-body threshold is joined file to file (a slice at a time) into the
// body file of its BodyHome (emulator-large-objects.ts).
//
// Parts uploaded in order (1, 2, 3, ..., as the agent and the applier send
// them; a part that arrives ahead of the one before waits in a file of its
// own and follows it) are appended to one running file, so completing the
// upload only renames that file: joining 4 GiB at CompleteMultipartUpload
// took longer than the SDK waits for an answer (60 s) on a busy machine, and
// the uploader started over. Other parts are joined at completion.
// Smaller objects, other checksum algorithms and invalid part lists take
// fauxqs's own path with the parts read back, so its answers stay its own.
// On both paths an upload created with a checksum algorithm completes only
// when every part named has its checksum, as S3 does: fauxqs would build the
// composite over the others.

import { createHash, type Hash } from "node:crypto";
import { closeSync, fsyncSync, mkdirSync, openSync, readSync, rmSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { homeOf, type BodyHome } from "./emulator-large-objects.ts";
import { isVersionedStore } from "./emulator-versions.ts";
import { fauxqsPrototype, fauxqsS3Error } from "./fauxqs-internals.ts";

const MIN_PART_BYTES = 5 * 1024 * 1024;
const SLICE = 8 * 1024 * 1024;

interface Part {
  readonly partNumber: number;
  readonly body: Buffer;
  readonly etag: string;
  readonly lastModified: Date;
  readonly checksumValue?: string;
}

interface Upload {
  readonly uploadId: string;
  readonly bucket: string;
  readonly key: string;
  readonly contentType: string;
  readonly metadata: Record<string, string>;
  readonly parts: Map<number, Part>;
  readonly checksumAlgorithm?: string;
  readonly contentLanguage?: string;
  readonly contentDisposition?: string;
  readonly cacheControl?: string;
  readonly contentEncoding?: string;
}

interface PartSpec {
  readonly partNumber: number;
  readonly etag: string;
}

/** The part of fauxqs's S3 store (dist/s3/s3Store.js) that runs multipart uploads. */
interface EmulatorS3Store {
  readonly buckets: Map<string, Map<string, object>>;
  readonly multipartUploads: Map<string, Upload>;
  readonly multipartUploadsByBucket: Map<string, Set<string>>;
  readonly persistence?: unknown;
  uploadPart(uploadId: string, partNumber: number, body: Buffer, checksumValue?: string): unknown;
  completeMultipartUpload(uploadId: string, specs: PartSpec[]): object;
  abortMultipartUpload(uploadId: string): void;
}

/** Where each part kept on disk is: its own file, or a range of the upload's running file. */
interface PartBytes {
  readonly file: string;
  readonly offset: number;
  readonly size: number;
}

const spilled = new WeakMap<Part, PartBytes>();

/**
 * The parts 1..next-1 of an upload, appended in order to one file of `size` bytes, and their MD5 on an unversioned
 * store: there the applier copies the live object aside before it overwrites it (history, snapshots), and a copy's
 * ETag is its bytes' MD5, read whole again at each copy unless kept as the parts arrived. A versioned store keeps the
 * old object as a version instead, so its objects are rarely copied: they skip that pass.
 */
interface Running {
  readonly path: string;
  readonly md5: Hash | undefined;
  size: number;
  next: number;
}

const running = new Map<string, Running>();
/** The MD5 of a joined object's bytes (its ETag is of its parts'), kept as it was joined in order. */
const contentMd5 = new WeakMap<object, string>();

/** The quoted MD5 of an object's bytes, when known without reading them (a copy's ETag, as S3 gives it). */
export function contentMd5Of(object: object): string | undefined {
  return contentMd5.get(object);
}

function uploadDir(home: BodyHome, uploadId: string): string {
  // Bucket names never start with "_": no clash with a bucket's folder.
  return join(home.dir, "_uploads", uploadId);
}

const partFile = (dir: string, partNumber: number) => join(dir, String(partNumber));

/** Where part partNumber of an upload is kept (its folder is made). */
export function partPath(home: BodyHome, uploadId: string, partNumber: number): string {
  const dir = uploadDir(home, uploadId);
  mkdirSync(dir, { recursive: true });
  return partFile(dir, partNumber);
}

/** Records among an upload's parts one written to partPath() by the caller (an UploadPartCopy), with its checksum when the upload asks for one. */
export function recordPartInFile(parts: Map<number, object>, partNumber: number, file: string, size: number, etag: string, checksumValue?: string): void {
  const part: Part = { partNumber, body: Buffer.alloc(0), etag, lastModified: new Date(), ...(checksumValue !== undefined ? { checksumValue } : {}) };
  spilled.set(part, { file, offset: 0, size });
  parts.set(partNumber, part);
}

/** Appends a part's bytes to the open file `fd`, a slice at a time. */
function append(fd: number, from: PartBytes, buffer: Buffer): void {
  const source = openSync(from.file, "r");
  try {
    for (let done = 0; done < from.size; ) {
      const read = readSync(source, buffer, 0, Math.min(buffer.length, from.size - done), from.offset + done);
      if (read === 0) throw new Error(`a part file ended early: ${from.file}`);
      for (let written = 0; written < read; ) written += writeSync(fd, buffer, written, read - written);
      done += read;
    }
  } finally {
    closeSync(source);
  }
}

function readPart(from: PartBytes): Buffer {
  const body = Buffer.allocUnsafe(from.size);
  const fd = openSync(from.file, "r");
  try {
    for (let done = 0; done < from.size; ) {
      const read = readSync(fd, body, done, from.size - done, from.offset + done);
      if (read === 0) throw new Error(`a part file ended early: ${from.file}`);
      done += read;
    }
  } finally {
    closeSync(fd);
  }
  return body;
}

/** Appends part (its bytes `body`) to the upload's running file, the next part in order. */
function appendRunning(state: Running, part: Part, body: Buffer): void {
  writeFileSync(state.path, body, { flag: "a" });
  state.md5?.update(body);
  spilled.set(part, { file: state.path, offset: state.size, size: body.length });
  state.size += body.length;
  state.next += 1;
}

/** The multipart ETag S3 gives: md5 of the parts' md5s, and their count. */
function multipartEtag(parts: readonly Part[]): string {
  const digests = Buffer.concat(parts.map((part) => Buffer.from(part.etag.replaceAll('"', ""), "hex")));
  return `"${createHash("md5").update(digests).digest("hex")}-${parts.length}"`;
}

/** The checksum of bytes in an algorithm the streamed join builds a composite checksum in, base64. */
const CHECKSUMS: ReadonlyMap<string, (bytes: Buffer) => string> = new Map([
  ["SHA256", (bytes: Buffer) => createHash("sha256").update(bytes).digest("base64")],
  ["SHA1", (bytes: Buffer) => createHash("sha1").update(bytes).digest("base64")],
  [
    "CRC32",
    (bytes: Buffer) => {
      const value = Buffer.alloc(4);
      value.writeUInt32BE(crc32(bytes));
      return value.toString("base64");
    },
  ],
]);

/** S3's answer to completing an upload created with a checksum algorithm when a part named lacks its checksum; undefined when none does. */
function missingChecksum(upload: Upload, specs: readonly PartSpec[]): string | undefined {
  if (upload.checksumAlgorithm === undefined) return undefined;
  const missing = specs.find((spec) => {
    const part = upload.parts.get(spec.partNumber);
    return part !== undefined && part.checksumValue === undefined;
  });
  return missing && `The upload was created using a ${upload.checksumAlgorithm.toLowerCase()} checksum. The complete request must include the checksum for each part. It was missing for part ${missing.partNumber} in the request.`;
}

/** The parts of specs, when every one is kept in a file, matches its ETag, is in order and big enough; else undefined. */
function validParts(upload: Upload, specs: readonly PartSpec[]): Part[] | undefined {
  const parts: Part[] = [];
  for (const [i, spec] of specs.entries()) {
    const part = upload.parts.get(spec.partNumber);
    const size = part && spilled.get(part)?.size;
    if (!part || size === undefined || part.etag.replaceAll('"', "") !== spec.etag.replaceAll('"', "")) return undefined;
    if (i > 0 && spec.partNumber <= (specs[i - 1]?.partNumber ?? 0)) return undefined;
    if (i < specs.length - 1 && size < MIN_PART_BYTES) return undefined;
    parts.push(part);
  }
  return parts.length > 0 ? parts : undefined;
}

async function patchMultipart(): Promise<void> {
  const prototype = await fauxqsPrototype<EmulatorS3Store>("./s3/s3Store.js", "S3Store", ["uploadPart", "completeMultipartUpload", "abortMultipartUpload"]);
  const s3Error = await fauxqsS3Error();
  const original = {
    uploadPart: prototype.uploadPart,
    completeMultipartUpload: prototype.completeMultipartUpload,
    abortMultipartUpload: prototype.abortMultipartUpload,
  };

  prototype.uploadPart = function uploadPartToFile(uploadId, partNumber, body, checksumValue) {
    const result = original.uploadPart.call(this, uploadId, partNumber, body, checksumValue);
    const home = homeOf(this.persistence);
    const part = this.multipartUploads.get(uploadId)?.parts.get(partNumber);
    if (!home || !part) return result;
    const kept: Part = { ...part, body: Buffer.alloc(0) };
    let state = running.get(uploadId);
    if (!state) running.set(uploadId, (state = { path: join(uploadDir(home, uploadId), "running"), md5: isVersionedStore(this) ? undefined : createHash("md5"), size: 0, next: 1 }));
    const parts = this.multipartUploads.get(uploadId)?.parts;
    if (partNumber === state.next) {
      mkdirSync(uploadDir(home, uploadId), { recursive: true });
      appendRunning(state, kept, body);
      parts?.set(partNumber, kept);
      // Parts that arrived ahead of this one (an uploader sends a few at once) follow it now, in order.
      for (let ahead = parts?.get(state.next); ahead; ahead = parts?.get(state.next)) {
        const bytes = spilled.get(ahead);
        if (!bytes || bytes.file === state.path) break;
        appendRunning(state, ahead, readPart(bytes));
        rmSync(bytes.file, { force: true });
      }
    } else {
      const file = partPath(home, uploadId, partNumber);
      writeFileSync(file, body);
      spilled.set(kept, { file, offset: 0, size: body.length });
      parts?.set(partNumber, kept);
    }
    return result;
  };

  prototype.completeMultipartUpload = function completeMultipartUploadFromFiles(uploadId, specs) {
    const upload = this.multipartUploads.get(uploadId);
    const missing = upload && missingChecksum(upload, specs);
    if (missing) throw s3Error("InvalidRequest", missing, 400);
    const home = homeOf(this.persistence);
    if (!upload || !home) return original.completeMultipartUpload.call(this, uploadId, specs);
    const dir = uploadDir(home, uploadId);
    const parts = validParts(upload, specs);
    const size = parts?.reduce((sum, part) => sum + (spilled.get(part)?.size ?? 0), 0) ?? 0;
    const state = running.get(uploadId);
    const streamable = parts && size > home.largeBodyBytes && (upload.checksumAlgorithm === undefined || CHECKSUMS.has(upload.checksumAlgorithm));
    if (!streamable) {
      // fauxqs's own path (and its errors), with the bodies back in memory.
      for (const [number, part] of upload.parts) {
        const bytes = spilled.get(part);
        if (bytes) upload.parts.set(number, { ...part, body: readPart(bytes) });
      }
      const object = original.completeMultipartUpload.call(this, uploadId, specs);
      running.delete(uploadId);
      rmSync(dir, { recursive: true, force: true });
      return object;
    }
    // The running file is the object when it holds exactly the parts named, in order.
    let at = 0;
    const inRunning = parts.every((part) => {
      const bytes = spilled.get(part);
      const next = bytes?.file === state?.path && bytes?.offset === at;
      at += bytes?.size ?? 0;
      return next;
    });
    const joined = inRunning && state && at === state.size ? state.path : join(dir, "object");
    const fd = openSync(joined, joined === state?.path ? "r+" : "w");
    try {
      const buffer = Buffer.allocUnsafe(SLICE);
      if (joined !== state?.path) for (const part of parts) append(fd, spilled.get(part) ?? { file: partFile(dir, part.partNumber), offset: 0, size: 0 }, buffer);
      // A temp folder's bodies (an unpersisted emulator) need not survive a crash.
      if (home.durable) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    running.delete(uploadId);
    let offset = 0;
    const boundaries = parts.map((part) => {
      const length = spilled.get(part)?.size ?? 0;
      const boundary = { partNumber: part.partNumber, offset, length };
      offset += length;
      return boundary;
    });
    // Every part has its checksum (missingChecksum), so the composite's -N and partChecksums[i] are the parts'.
    const checksums = parts.flatMap((part) => part.checksumValue ?? []);
    const checksum = upload.checksumAlgorithm ? CHECKSUMS.get(upload.checksumAlgorithm) : undefined;
    const object = {
      key: upload.key,
      body: Buffer.alloc(0),
      contentType: upload.contentType,
      contentLength: size,
      etag: multipartEtag(parts),
      lastModified: new Date(),
      metadata: upload.metadata,
      parts: boundaries,
      ...(upload.contentLanguage && { contentLanguage: upload.contentLanguage }),
      ...(upload.contentDisposition && { contentDisposition: upload.contentDisposition }),
      ...(upload.cacheControl && { cacheControl: upload.cacheControl }),
      ...(upload.contentEncoding && { contentEncoding: upload.contentEncoding }),
      ...(upload.checksumAlgorithm && checksum
        ? {
            checksumAlgorithm: upload.checksumAlgorithm,
            // As S3 computes a composite checksum: in the upload's algorithm, over the parts' checksums.
            checksumValue: `${checksum(Buffer.concat(checksums.map((c) => Buffer.from(c, "base64"))))}-${checksums.length}`,
            checksumType: "COMPOSITE",
            partChecksums: checksums,
          }
        : {}),
    };
    if (joined === state?.path && state.md5) contentMd5.set(object, `"${state.md5.digest("hex")}"`);
    home.recordInFile(upload.bucket, object, joined);
    home.deleteMultipartUpload(uploadId);
    this.buckets.get(upload.bucket)?.set(upload.key, object);
    this.multipartUploads.delete(uploadId);
    this.multipartUploadsByBucket.get(upload.bucket)?.delete(uploadId);
    rmSync(dir, { recursive: true, force: true });
    return object;
  };

  prototype.abortMultipartUpload = function abortMultipartUploadWithFiles(uploadId) {
    original.abortMultipartUpload.call(this, uploadId);
    running.delete(uploadId);
    const home = homeOf(this.persistence);
    if (home) rmSync(uploadDir(home, uploadId), { recursive: true, force: true });
  };
}

let patched: Promise<void> | undefined;

/** Makes every fauxqs emulator in this process with a BodyHome keep multipart parts in files and join large objects on disk; safe to call many times. */
export function joinPartsOnDisk(): Promise<void> {
  patched ??= patchMultipart();
  return patched;
}

/** Parts of uploads an earlier run of the emulator left (its uploads do not outlive it: their uploaders start again). */
export function removeLeftoverParts(dataDir: string): void {
  rmSync(join(dataDir, "large-objects", "_uploads"), { recursive: true, force: true });
  // Copies a crash interrupted (emulator-file-bodies.ts).
  rmSync(join(dataDir, "large-objects", "_copies"), { recursive: true, force: true });
}
