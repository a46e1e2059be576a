// The streamed rebuild of a large file from a ranged delta (issue 17), on the
// emulator through the applier's store: one ranged read of the base per part,
// the parts no range touches copied server-side instead of uploaded, and the
// whole file still checked against its SHA-256, so a change the agent missed
// in a copied part is caught and nothing is written.

import { createHash, randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ByteRange } from "../../contract/delta-ranges.ts";
import { encodeMeta } from "../../contract/layout.ts";
import { encodeInline, isMarkerMessage, parseMessage } from "../../contract/wire.ts";
import { applyDelta, DeltaBaseError, type DeltaPut } from "../../lambdas/applier/delta-rebuild.ts";
import { WRITTEN_BY, writeStamp } from "../../lambdas/applier/write-stamps.ts";
import { makeS3Client } from "../../lambdas/aws-clients.ts";
import { DirectS3Store } from "../../lambdas/store/direct-s3-store.ts";
import { startTestEmulator } from "../support/fauxqs.ts";
import { sha256Of as sha } from "../support/content.ts";

const MiB = 1024 * 1024;
const KEY = "data/s/app.db";

let emulator: Awaited<ReturnType<typeof startTestEmulator>>;
beforeAll(async () => {
  emulator = await startTestEmulator();
});
afterAll(async () => {
  await emulator.server.stop();
});

/**
 * The applier's store on a fresh bucket, counting the S3 commands it sends. The emulator reports no SHA-256 of a
 * copied part; `copiedChecksum` stands in for S3's: the SHA-256 of the copied range of `source` (what S3 answers), or a
 * fixed one.
 */
function countingStore(copiedChecksum?: { source: Buffer } | string): { store: DirectS3Store; commands: string[] } {
  const client = makeS3Client({ region: "us-east-1", endpoint: emulator.endpoint });
  const commands: string[] = [];
  client.middlewareStack.add(
    (next, context) => async (args) => {
      commands.push(context.commandName ?? "");
      const out = await next(args);
      const result = (out.output as { CopyPartResult?: { ChecksumSHA256?: string } }).CopyPartResult;
      if (!result || copiedChecksum === undefined) return out;
      if (typeof copiedChecksum === "string") result.ChecksumSHA256 = copiedChecksum;
      else {
        const [from, to] = ((args.input as { CopySourceRange?: string }).CopySourceRange ?? "").replace("bytes=", "").split("-").map(Number);
        result.ChecksumSHA256 = createHash("sha256").update(copiedChecksum.source.subarray(from, (to ?? -1) + 1)).digest("base64");
      }
      return out;
    },
    { step: "initialize", name: "countCommands" },
  );
  return { store: new DirectS3Store(client, emulator.newBucket()), commands };
}

/** A delta put turning base into next, carrying `ranges` of next (as the agent would send it). */
function deltaPut(base: Buffer, next: Buffer, ranges: ByteRange[]): { put: DeltaPut; carried: Buffer } {
  const carried = Buffer.concat(ranges.map(([offset, length]) => next.subarray(offset, offset + length)));
  const body = JSON.stringify({
    v: 1,
    set: "s",
    records: [{ seq: 2, op: "put", path: "app.db", size: next.length, mode: 0o644, mtimeNs: "5", sha256: sha(next), content: encodeInline(carried), delta: { base: sha(base), blocks: [], ranges } }],
  });
  const message = parseMessage(body);
  const record = isMarkerMessage(message) ? undefined : message.records[0];
  if (record?.op !== "put" || !record.delta) throw new Error("expected a delta put");
  return { put: { ...record, delta: record.delta }, carried };
}

const count = (commands: readonly string[], name: string) => commands.filter((c) => c === name).length;

describe("streamed delta rebuild on the emulator", () => {
  // Five 8 MiB parts; two pages written in the third.
  const base = randomBytes(40 * MiB);
  const ranges: ByteRange[] = [
    [17 * MiB, 4096],
    [17 * MiB + 8192, 4096],
  ];
  const next = Buffer.from(base);
  for (const [offset, length] of ranges) randomBytes(length).copy(next, offset);
  // Stamped as the applier stamps what a record writes (write-stamps.ts): the multipart upload carries it.
  const meta = { ...encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "5", sha256: sha(next) }), ...writeStamp("G1", 2) };
  const withBase = async (copiedChecksum?: { source: Buffer } | string) => {
    const counted = countingStore(copiedChecksum);
    await counted.store.put(KEY, base, encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: sha(base) }));
    counted.commands.length = 0;
    return counted;
  };

  it("uploads only the part a range touches, copies the others server-side, and reads the base once per part", async () => {
    const { store, commands } = await withBase({ source: base });
    const { put, carried } = deltaPut(base, next, ranges);
    await applyDelta(store, KEY, put, { bytes: carried }, meta, { inMemoryBytes: 0 });
    const sent = [...commands];
    expect((await store.hash(KEY))?.sha256).toBe(sha(next));
    expect((await store.head(KEY))?.meta[WRITTEN_BY]).toBe("G1:2");
    expect(count(sent, "UploadPartCommand")).toBe(1);
    expect(count(sent, "UploadPartCopyCommand")).toBe(4);
    expect(count(sent, "GetObjectCommand")).toBe(5);
  });

  it("uploads the bytes it read when the store does not report a copied part's SHA-256 (nothing proves what it copied)", async () => {
    const { store, commands } = await withBase();
    const { put, carried } = deltaPut(base, next, ranges);
    await applyDelta(store, KEY, put, { bytes: carried }, meta, { inMemoryBytes: 0 });
    const sent = [...commands];
    expect((await store.hash(KEY))?.sha256).toBe(sha(next));
    // The first copy answered without a SHA-256: that part and every later one go up as the bytes read.
    expect(count(sent, "UploadPartCopyCommand")).toBe(1);
    expect(count(sent, "UploadPartCommand")).toBe(5);
    expect(count(sent, "GetObjectCommand")).toBe(5);
  });

  it("catches a change the agent missed in a copied part: the rebuilt file is refused and the base stays", async () => {
    const { store } = await withBase();
    // The source also changed a page in the last part, which the delta does not list.
    const missed = Buffer.from(next);
    missed.fill(1, 33 * MiB, 33 * MiB + 4096);
    const { put, carried } = deltaPut(base, missed, ranges);
    await expect(applyDelta(store, KEY, put, { bytes: carried }, meta, { inMemoryBytes: 0 })).rejects.toThrow(DeltaBaseError);
    expect((await store.hash(KEY))?.sha256).toBe(sha(base));
  });

  it("refuses the rebuild when S3's SHA-256 of a copied part is not that of the bytes read for it (the base changed meanwhile)", async () => {
    const { store } = await withBase(createHash("sha256").update("other bytes").digest("base64"));
    const { put, carried } = deltaPut(base, next, ranges);
    await expect(applyDelta(store, KEY, put, { bytes: carried }, meta, { inMemoryBytes: 0 })).rejects.toThrow(/does not match its sha256/);
    expect((await store.hash(KEY))?.sha256).toBe(sha(base));
  });
});
