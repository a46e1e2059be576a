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
import { DirectS3Store } from "../../lambdas/store/direct-s3-store.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
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
