// S3's limits and answers for copies, written once for the layers that copy
// (emulator-file-bodies.ts, emulator-versioned-bucket.ts).
//
// UploadPartCopy is answered here for a source whose body is in memory or in
// a file (emulator-file-bodies.ts routes both here): fauxqs's own answer names
// no checksum: S3's CopyPartResult carries the copied part's checksum in the
// algorithm the upload was created with (ChecksumSHA256 for the applier's
// uploads), and the applier copies an unchanged part only when that checksum
// proves the bytes copied are the bytes it read (lambdas/s3-multipart.ts).
// The part keeps the checksum too, so the completed object's composite
// checksum covers copied parts as it covers uploaded ones.

import { createHash, type Hash } from "node:crypto";
import type http from "node:http";
import { crc32 } from "node:zlib";
import { header, S3ErrorAnswer } from "./emulator-s3-http.ts";
import { escapeXml } from "./emulator-version-listing.ts";

/** S3 copies at most 5 GiB in one CopyObject or one UploadPartCopy. */
export const MAX_COPY_BYTES = 5 * 1024 ** 3;
const MAX_PART_NUMBER = 10_000;
/** S3 copies a byte range only of a source larger than 5 MB. */
const MIN_RANGED_SOURCE_BYTES = 5 * 1024 * 1024;

/** A running checksum of copied bytes, in one of the algorithms fauxqs checks uploaded parts with. */
export interface PartChecksum {
  /** The element of CopyPartResult that names it, e.g. "ChecksumSHA256". */
  readonly element: string;
  update(bytes: Uint8Array): void;
  /** The checksum, base64, as S3 reports it. */
  digest(): string;
}

function hashed(element: string, hash: Hash): PartChecksum {
  return { element, update: (bytes) => void hash.update(bytes), digest: () => hash.digest("base64") };
}

/** The checksum a part of an upload created with `algorithm` carries, or undefined (none asked, or one fauxqs does not compute). */
export function partChecksum(algorithm: string | undefined): PartChecksum | undefined {
  switch (algorithm?.toUpperCase()) {
    case "SHA256":
      return hashed("ChecksumSHA256", createHash("sha256"));
    case "SHA1":
      return hashed("ChecksumSHA1", createHash("sha1"));
    case "CRC32": {
      let value = 0;
      return {
        element: "ChecksumCRC32",
        update: (bytes) => {
          value = crc32(bytes, value);
        },
        digest: () => {
          const out = Buffer.alloc(4);
          out.writeUInt32BE(value >>> 0);
          return out.toString("base64");
        },
      };
    }
    default:
      return undefined;
  }
}

export const noSuchUpload = () =>
  new S3ErrorAnswer("NoSuchUpload", "The specified multipart upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.", 404);

/** The part number of an UploadPartCopy, refused as S3 refuses one outside 1..10,000. */
export function copiedPartNumber(text: string): number {
  const partNumber = Number(text);
  if (!Number.isInteger(partNumber) || partNumber < 1 || partNumber > MAX_PART_NUMBER) {
    throw new S3ErrorAnswer("InvalidArgument", `Part number must be an integer between 1 and ${MAX_PART_NUMBER}, inclusive`, 400);
  }
  return partNumber;
}

/** The bytes [start, end] of a source of `size` bytes an UploadPartCopy copies (x-amz-copy-source-range, else all), refused as S3 refuses them. */
export function copiedRange(request: http.IncomingMessage, size: number): { start: number; end: number } {
  let start = 0;
  let end = size - 1;
  const range = header(request, "x-amz-copy-source-range");
  if (range !== undefined) {
    const match = /^bytes=(\d+)-(\d+)$/.exec(range);
    if (!match) throw new S3ErrorAnswer("InvalidArgument", "Invalid x-amz-copy-source-range", 400);
    if (size <= MIN_RANGED_SOURCE_BYTES) throw new S3ErrorAnswer("InvalidRequest", "The specified copy source is not supported as a byte-range copy source", 400);
    start = Number(match[1]);
    end = Number(match[2]);
    if (start > end || end >= size) throw new S3ErrorAnswer("InvalidArgument", `Range specified is not valid for source object of size: ${size}`, 400);
  }
  if (end - start + 1 > MAX_COPY_BYTES) throw new S3ErrorAnswer("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", 400);
  return { start, end };
}

/** S3's answer to an UploadPartCopy: the part's ETag, and its checksum when the upload names an algorithm. */
export function copyPartResultXml(etag: string, checksum?: { element: string; value: string }): string {
  const named = checksum ? `<${checksum.element}>${checksum.value}</${checksum.element}>` : "";
  return `<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult><ETag>${etag}</ETag><LastModified>${new Date().toISOString()}</LastModified>${named}</CopyPartResult>`;
}

/** S3's answer to a CopyObject: the new object's ETag and LastModified. */
export function copyObjectResultXml(written: { etag: string; lastModified: Date }): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult><ETag>${escapeXml(written.etag)}</ETag><LastModified>${written.lastModified.toISOString()}</LastModified></CopyObjectResult>`;
}

/** S3's refusal of a CopyObject whose source is over its limit (the applier then copies in parts: lambdas/s3-multipart.ts). */
export function copySourceTooLarge(maxCopyObjectBytes: number): S3ErrorAnswer {
  return new S3ErrorAnswer("InvalidRequest", `The specified copy source is larger than the maximum allowable size for a copy source: ${maxCopyObjectBytes}`, 400);
}
