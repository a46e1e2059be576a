// putInParts (the agent's staging, the applier's rebuilt deltas): a few parts
// read and uploaded at once, never more, the whole object's SHA-256 over the
// parts in order; and each part hashed once, its SHA-256 serving as both its
// checksum and the signature's payload hash. Checked on the wire against a
// fake S3 that holds its answers to UploadPart.

import { S3Client } from "@aws-sdk/client-s3";
import { createHash } from "node:crypto";
import type { ServerResponse } from "node:http";
import { describe, expect, it } from "vitest";
import { MULTIPART_THRESHOLD, PARTS_IN_FLIGHT, putInParts } from "../../lambdas/s3-multipart.ts";
import { captureServerForTests } from "../support/capture-server.ts";

const capture = captureServerForTests();
const PARTS = 6;
const SIZE = PARTS * MULTIPART_THRESHOLD - 1000;

/** Bytes hashed through the client's SHA-256 (the SDK's signing and checksums use it). */
let sdkHashedBytes = 0;
class CountingSha256 {
  readonly #hash = createHash("sha256");
  update(data: Uint8Array): void {
    sdkHashedBytes += data.length;
    this.#hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return this.#hash.digest();
  }
  reset(): void {}
}

function client(): S3Client {
  return new S3Client({ region: "us-east-1", endpoint: capture.server.endpoint, forcePathStyle: true, credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxAttempts: 1, sha256: CountingSha256 });
}

/** The object's bytes: each position's own value, so a part read at the wrong offset shows. */
function bytesAt(offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i += 4096) out[i] = ((offset + i) / 4096) & 0xff;
  return out;
}

/**
 * Answers like S3; UploadPart answers are held until as many parts as can be in
 * flight are waiting (fewer for the last ones), so an upload that sends one part
 * at a time never completes.
 */
function serveHeldParts(): { maxWaiting: () => number; answered: () => number; completeBody: () => string } {
  const waiting: { res: ServerResponse; number: string }[] = [];
  let answered = 0;
  let max = 0;
  let complete = "";
  capture.server.responder = (request, res) => {
    const url = new URL(request.url, "http://x");
    const xml = (body: string) => {
      res.writeHead(200, { "content-type": "application/xml" });
      res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`);
    };
    if (request.method === "POST" && url.searchParams.has("uploads")) return xml(`<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>`);
    if (request.method === "PUT" && url.searchParams.has("partNumber")) {
      waiting.push({ res, number: url.searchParams.get("partNumber") ?? "" });
      max = Math.max(max, waiting.length);
      if (waiting.length === Math.min(PARTS_IN_FLIGHT, PARTS - answered)) {
        for (const part of waiting.splice(0)) {
          answered += 1;
          part.res.writeHead(200, { etag: `"part-${part.number}"` });
          part.res.end();
        }
      }
      return;
    }
    if (request.method === "POST" && url.searchParams.has("uploadId")) {
      complete = request.body.toString("utf8");
      return xml(`<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>"parts-${PARTS}"</ETag></CompleteMultipartUploadResult>`);
    }
    res.writeHead(500);
    res.end();
  };
  return { maxWaiting: () => max, answered: () => answered, completeBody: () => complete };
}

/** Answers like S3, every part at once. */
const answerAtOnce = (request: { method: string; url: string }, res: ServerResponse): void => {
  const url = new URL(request.url, "http://x");
  if (request.method === "POST" && url.searchParams.has("uploads")) {
    res.writeHead(200, { "content-type": "application/xml" });
    res.end(`<?xml version="1.0" encoding="UTF-8"?><InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>`);
    return;
  }
  res.writeHead(request.method === "DELETE" ? 204 : 200, { etag: `"part-${url.searchParams.get("partNumber") ?? ""}"` });
  res.end();
};

describe("putInParts", () => {
  it("reads and uploads a few parts at once, never more than PARTS_IN_FLIGHT, and hashes the whole object in order", async () => {
    const served = serveHeldParts();
    const reads: number[] = [];
    // Parts read and not yet answered: the bytes the upload holds.
    let maxHeld = 0;
    let whole = "";
    await putInParts(client(), {
      bucket: "b",
      key: "k",
      size: SIZE,
      metadata: {},
      read: async (offset, length) => {
        reads.push(offset);
        maxHeld = Math.max(maxHeld, reads.length - served.answered());
        return bytesAt(offset, length);
      },
      beforeComplete: (sha256) => (whole = sha256),
    });
    expect(served.maxWaiting()).toBe(PARTS_IN_FLIGHT);
    expect(reads).toEqual(Array.from({ length: PARTS }, (_, i) => i * MULTIPART_THRESHOLD));
    expect(maxHeld).toBe(PARTS_IN_FLIGHT);
    const uploads = capture.server.requests.filter((r) => r.method === "PUT");
    expect(uploads.length).toBe(PARTS);
    expect(whole).toBe(createHash("sha256").update(bytesAt(0, SIZE)).digest("hex"));
    expect([...served.completeBody().matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => Number(m[1]))).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it("hashes each part once: its SHA-256 is both the checksum S3 checks and the signature's payload hash", async () => {
    serveHeldParts();
    sdkHashedBytes = 0;
    await putInParts(client(), { bucket: "b", key: "k", size: SIZE, metadata: {}, read: async (offset, length) => bytesAt(offset, length) });
    const uploads = capture.server.requests.filter((r) => r.method === "PUT");
    expect(uploads.length).toBe(PARTS);
    for (const part of uploads) {
      const digest = createHash("sha256").update(part.body).digest();
      expect(part.headers["x-amz-content-sha256"]).toBe(digest.toString("hex"));
      expect(part.headers["x-amz-checksum-sha256"]).toBe(digest.toString("base64"));
    }
    // The SDK hashed none of the parts' bytes again (only its signing strings and the small XML bodies).
    expect(sdkHashedBytes).toBeLessThan(MULTIPART_THRESHOLD);
  });

  it("reads and uploads nothing after a part's read failed, though the parts before it are still being read", async () => {
    capture.server.responder = answerAtOnce;
    const reads: number[] = [];
    const upload = putInParts(client(), {
      bucket: "b",
      key: "k",
      size: SIZE,
      metadata: {},
      read: async (offset, length) => {
        const part = offset / MULTIPART_THRESHOLD + 1;
        reads.push(part);
        // Part 3 fails at once; part 2 is read slowly, so part 3's own task reports the failure only after it.
        if (part === 3) throw new Error("unreadable part 3");
        if (part === 2) await new Promise((resolve) => setTimeout(resolve, 200));
        return bytesAt(offset, length);
      },
    });
    await expect(upload).rejects.toThrow(/unreadable part 3/);
    // The parts read ahead before the failure, and nothing after it: no part 5, and part 1 not uploaded for nothing.
    expect(reads).toEqual([1, 2, 3, 4]);
    expect(capture.server.requests.filter((r) => r.method === "PUT").map((r) => new URL(r.url, "http://x").searchParams.get("partNumber"))).toEqual([]);
    expect(capture.server.requests.filter((r) => r.method === "DELETE")).toHaveLength(1);
  });

  it("aborts only once the parts in flight when one failed are answered: no part lands after AbortMultipartUpload", async () => {
    const events: string[] = [];
    const held: ServerResponse[] = [];
    const answer = (res: ServerResponse, number: string) => {
      events.push(`answered ${number}`);
      res.writeHead(200, { etag: `"part-${number}"` });
      res.end();
    };
    capture.server.responder = (request, res) => {
      const url = new URL(request.url, "http://x");
      if (request.method === "POST" && url.searchParams.has("uploads")) return answerAtOnce(request, res);
      if (request.method === "PUT") {
        const number = url.searchParams.get("partNumber") ?? "";
        events.push(`part ${number}`);
        held.push(res);
        if (held.length < PARTS_IN_FLIGHT) return;
        // Part 1 fails; the others stay in flight a while longer, then succeed.
        const [first, ...rest] = held.splice(0);
        events.push("failed 1");
        first?.writeHead(500);
        first?.end();
        setTimeout(() => rest.forEach((r, i) => answer(r, String(i + 2))), 100);
        return;
      }
      events.push(request.method === "DELETE" ? "abort" : `${request.method} ${url.search}`);
      res.writeHead(204);
      res.end();
    };
    await expect(putInParts(client(), { bucket: "b", key: "k", size: SIZE, metadata: {}, read: async (offset, length) => bytesAt(offset, length) })).rejects.toThrow();
    expect(events.at(-1)).toBe("abort");
    expect(events.filter((e) => e.startsWith("answered"))).toEqual(["answered 2", "answered 3", "answered 4"]);
    // The four parts travel on four connections at once: they reach the server in any order.
    expect(events.filter((e) => e.startsWith("part")).sort()).toEqual(["part 1", "part 2", "part 3", "part 4"]);
  });
});
