// A put whose bytes the applier checked against the record's SHA-256 hands
// that SHA-256 to the store (PutOptions.sha256), which sends it as the
// write's checksum instead of hashing the bytes a second time; the store
// still checks the body against it, as S3 does.

import { createHash } from "node:crypto";
import { S3Client } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { blockDataKey, stagingKey } from "../../contract/layout.ts";
import { BLOCK_SIZE, encodeInline, type WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MULTIPART_THRESHOLD } from "../../lambdas/s3-multipart.ts";
import { DirectS3Store } from "../../lambdas/store/direct-s3-store.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { S3Store } from "../../lambdas/store/s3-store.ts";
import { ContentMismatchError, type PutOptions, type WriteResult } from "../../lambdas/store/store.ts";
import { captureServerForTests } from "../support/capture-server.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";

const SET = "docs";
const sha256 = (bytes: Uint8Array | string) => createHash("sha256").update(bytes).digest("hex");

/** A memory store that records the options of every put. */
class RecordingStore extends MemoryStore {
  readonly puts = new Map<string, PutOptions | undefined>();

  override put(key: string, body: Uint8Array, meta?: Record<string, string>, options?: PutOptions): Promise<WriteResult> {
    this.puts.set(key, options);
    return super.put(key, body, meta, options);
  }
}

describe("the applier's puts name the SHA-256 they checked", () => {
  it("inline and packed puts, and a volume's blocks, pass the record's sha256 to the store", async () => {
    const store = new RecordingStore();
    const packed = Buffer.from("the bytes of a packed file");
    const records: WireRecord[] = [
      putRecord(1, "inline.txt", "the bytes of an inline file"),
      { seq: 2, op: "put", path: "packed.txt", size: packed.length, mode: 0o644, mtimeNs: "1", sha256: sha256(packed), content: { kind: "packed", encoding: "raw", offset: 0, length: packed.length } },
    ];
    await store.put(stagingKey(SET, 1, sha256(packed)), packed);
    const body = JSON.stringify({ ...JSON.parse(messageBody(SET, records)), pack: { size: packed.length, sha256: sha256(packed) } });
    expect(await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m1", SET, body))).toMatchObject({ kind: "applied", records: 2 });
    expect(store.puts.get(`data/${SET}/inline.txt`)).toEqual({ sha256: records[0]?.op === "put" ? records[0].sha256 : "" });
    expect(store.puts.get(`data/${SET}/packed.txt`)).toEqual({ sha256: sha256(packed) });

    const block = Buffer.alloc(BLOCK_SIZE, 7);
    const volume = "vol";
    const blockRecord: WireRecord = { seq: 1, op: "block", index: 0, volumeSize: BLOCK_SIZE, sha256: sha256(block), content: encodeInline(block) };
    expect(await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m2", volume, messageBody(volume, [blockRecord])))).toMatchObject({ kind: "applied" });
    expect(store.puts.get(blockDataKey(volume, sha256(block)))).toEqual({ sha256: sha256(block) });
  });

  it("the memory store refuses a body that does not have the SHA-256 given with it, and writes nothing", async () => {
    const store = new MemoryStore();
    await expect(store.put("data/s/f", Buffer.from("these bytes"), {}, { sha256: sha256("other bytes") })).rejects.toBeInstanceOf(ContentMismatchError);
    expect(await store.get("data/s/f")).toBeUndefined();
    await store.put("data/s/f", Buffer.from("these bytes"), {}, { sha256: sha256("these bytes") });
    expect((await store.get("data/s/f"))?.body.toString()).toBe("these bytes");
  });
});

describe("the direct S3 store's put with a known SHA-256", () => {
  const capture = captureServerForTests();

  it("sends the given SHA-256 as the checksum and the signed payload hash: the body is not hashed again, and S3 checks it against that", async () => {
    capture.server.responder = (_request, res) => {
      res.writeHead(200, { etag: '"e"' });
      res.end();
    };
    const client = new S3Client({ region: "us-east-1", endpoint: capture.server.endpoint, forcePathStyle: true, credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxAttempts: 1 });
    const store = new DirectS3Store(client, "b");
    // Not the body's hash: what is sent is what the caller named (S3 would refuse this write with BadDigest).
    const named = sha256("what the caller checked");
    await store.put("data/s/f", Buffer.from("the body"), {}, { sha256: named });
    await store.put("data/s/g", Buffer.from("the body"));
    const [given, computed] = capture.server.requests;
    expect(given?.headers["x-amz-checksum-sha256"]).toBe(Buffer.from(named, "hex").toString("base64"));
    expect(given?.headers["x-amz-content-sha256"]).toBe(named);
    expect(computed?.headers["x-amz-checksum-sha256"]).toBe(createHash("sha256").update("the body").digest("base64"));
  });
});

describe("a put in parts with a known SHA-256 (a body over MULTIPART_THRESHOLD)", () => {
  const capture = captureServerForTests();

  /** Answers an upload in parts like S3 does; what was asked is in capture.server.requests. */
  function serveParts(): S3Client {
    capture.server.responder = (request, res) => {
      const url = new URL(request.url, "http://x");
      const xml = (body: string) => {
        res.writeHead(200, { "content-type": "application/xml" });
        res.end(`<?xml version="1.0" encoding="UTF-8"?>${body}`);
      };
      if (request.method === "POST" && url.searchParams.has("uploads")) return xml(`<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>U1</UploadId></InitiateMultipartUploadResult>`);
      if (request.method === "POST" && url.searchParams.has("uploadId")) return xml(`<CompleteMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><ETag>"parts-2"</ETag></CompleteMultipartUploadResult>`);
      res.writeHead(request.method === "DELETE" ? 204 : 200, { etag: `"part-${url.searchParams.get("partNumber") ?? ""}"` });
      res.end();
    };
    return new S3Client({ region: "us-east-1", endpoint: capture.server.endpoint, forcePathStyle: true, credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxAttempts: 1 });
  }
  const completes = () => capture.server.requests.filter((r) => r.method === "POST" && new URL(r.url, "http://x").searchParams.has("uploadId")).length;
  const aborts = () => capture.server.requests.filter((r) => r.method === "DELETE").length;

  it.each([
    ["S3Store", (client: S3Client) => new S3Store(client, "b")],
    ["DirectS3Store", (client: S3Client) => new DirectS3Store(client, "b")],
  ])("%s completes the upload only when the whole body has the given SHA-256; else it aborts it with ContentMismatchError", async (_name, make) => {
    const store = make(serveParts());
    const body = Buffer.alloc(MULTIPART_THRESHOLD + 1, 1);
    await expect(store.put("data/s/large", body, {}, { sha256: sha256("other bytes") })).rejects.toBeInstanceOf(ContentMismatchError);
    expect(completes()).toBe(0);
    expect(aborts()).toBe(1);
    expect(await store.put("data/s/large", body, {}, { sha256: sha256(body) })).toMatchObject({ etag: '"parts-2"' });
    expect(completes()).toBe(1);
  });
});

describe("a given SHA-256 in another form than 64 lower-case hex digits", () => {
  const capture = captureServerForTests();
  const BAD = ["XYZ", sha256("the body").toUpperCase(), sha256("the body").slice(0, 63), `${sha256("the body")}0`, ` ${sha256("the body").slice(1)}`];

  it.each(BAD)("is refused by every store before anything is sent or written: %s", async (bad) => {
    capture.server.responder = (_request, res) => {
      res.writeHead(200, { etag: '"e"' });
      res.end();
    };
    const client = new S3Client({ region: "us-east-1", endpoint: capture.server.endpoint, forcePathStyle: true, credentials: { accessKeyId: "a", secretAccessKey: "b" }, maxAttempts: 1 });
    const memory = new MemoryStore();
    for (const store of [memory, new S3Store(client, "b"), new DirectS3Store(client, "b")]) {
      for (const body of [Buffer.from("the body"), Buffer.alloc(MULTIPART_THRESHOLD + 1)]) {
        await expect(store.put("data/s/f", body, {}, { sha256: bad })).rejects.toThrow(/PutOptions\.sha256 must be 64 lower-case hex digits/);
      }
    }
    expect(capture.server.requests).toEqual([]);
    expect(await memory.get("data/s/f")).toBeUndefined();
  });
});
