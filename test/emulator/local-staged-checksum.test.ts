// The local target trusts its own emulator's checksums as the applier trusts
// S3's: a staged object put with its whole SHA-256 (as the agent stages one
// PUT) is checked with a HEAD, never read back; one put in parts (a
// composite checksum, not the object's SHA-256) or with none is read and
// hashed; a target at a given endpoint trusts none unless told it is
// startEmulator's. A checksum that differs
// from the record's still rejects the message.

import { createHash } from "node:crypto";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterEach, describe, expect, it } from "vitest";
import { checkStaged } from "../../lambdas/applier/staged-content.ts";
import { startLocalTarget, type LocalTarget } from "../../lambdas/local/target.ts";
import { putInParts } from "../../lambdas/s3-multipart.ts";
import { BadMessageError, type PutRecord } from "../../contract/wire.ts";
import { putRecord } from "../support/messages.ts";

const targets: LocalTarget[] = [];
afterEach(async () => {
  for (const target of targets.splice(0).reverse()) await target.stop();
});

function recordOf(body: Buffer, sha256 = createHash("sha256").update(body).digest("hex")): PutRecord {
  const record = putRecord(1, "a.bin", "");
  if (record.op !== "put") throw new Error("internal: putRecord made no put");
  return { ...record, size: body.length, sha256 };
}

/** Counts the GetObject requests the target's store sends. */
function countGets(target: LocalTarget): { readonly count: number } {
  const counter = { count: 0 };
  target.store.client.middlewareStack.add(
    (next, context) => async (args) => {
      if (context.commandName === "GetObjectCommand") counter.count += 1;
      return next(args);
    },
    { step: "initialize", name: "countGets" },
  );
  return counter;
}

const put = (target: LocalTarget, key: string, body: Buffer, checksum?: Buffer) =>
  target.store.client.send(new PutObjectCommand({ Bucket: target.bucket, Key: key, Body: body, ...(checksum ? { ChecksumSHA256: checksum.toString("base64") } : {}) }));

for (const versioned of [false, true]) {
  describe(`local target, ${versioned ? "versioned" : "unversioned"} bucket`, () => {
    it("checks a staged object put with its SHA-256 by a HEAD, and rejects one whose record names other bytes, reading neither", async () => {
      const target = await startLocalTarget({ emulator: { port: 0, versioned } });
      targets.push(target);
      const gets = countGets(target);
      const body = Buffer.alloc(3 * 1024 * 1024, 5);
      await put(target, "staging/docs/1.x", body, createHash("sha256").update(body).digest());
      const checked = await checkStaged(target.store, "staging/docs/1.x", recordOf(body), "docs/a.bin", body.length);
      expect(checked.etag).toBe(`"${createHash("md5").update(body).digest("hex")}"`);
      const other = createHash("sha256").update("other bytes").digest("hex");
      await expect(checkStaged(target.store, "staging/docs/1.x", recordOf(body, other), "docs/a.bin", body.length)).rejects.toThrow(BadMessageError);
      expect(gets.count).toBe(0);
      // The emulator would not keep a claim the bytes do not bear out: there is nothing to trust wrongly.
      await expect(put(target, "staging/docs/2.x", body, createHash("sha256").update("other bytes").digest())).rejects.toThrow(/did not match the calculated checksum/);
    });

    it("keeps no lying checksum put with an extra query parameter, so a planted object is never trusted", async () => {
      const target = await startLocalTarget({ emulator: { port: 0, versioned } });
      targets.push(target);
      const planted = Buffer.alloc(64, 1);
      const owners = Buffer.alloc(64, 2);
      const lie = new PutObjectCommand({ Bucket: target.bucket, Key: "staging/docs/6.x", Body: planted, ChecksumSHA256: createHash("sha256").update(owners).digest("base64") });
      lie.middlewareStack.add(
        (next) => async (args) => {
          const request: unknown = args.request;
          if (typeof request === "object" && request !== null && "query" in request && typeof request.query === "object" && request.query !== null) Object.assign(request.query, { a: "1" });
          return next(args);
        },
        { step: "build" },
      );
      await expect(target.store.client.send(lie)).rejects.toThrow(/did not match the calculated checksum/);
      // Planted without a claim, the bytes are read and hashed: the owner's record does not match them.
      await target.store.client.send(new PutObjectCommand({ Bucket: target.bucket, Key: "staging/docs/6.x", Body: planted }));
      await expect(checkStaged(target.store, "staging/docs/6.x", recordOf(owners), "docs/a.bin", planted.length)).rejects.toThrow(BadMessageError);
    });

    it("reads and hashes a staged object put in parts or without a checksum", async () => {
      const target = await startLocalTarget({ emulator: { port: 0, versioned } });
      targets.push(target);
      const gets = countGets(target);
      const big = Buffer.alloc(9 * 1024 * 1024, 6);
      await putInParts(target.store.client, { bucket: target.bucket, key: "staging/docs/3.x", size: big.length, metadata: {}, read: async (offset, length) => big.subarray(offset, offset + length) });
      await checkStaged(target.store, "staging/docs/3.x", recordOf(big), "docs/big.bin", big.length);
      expect(gets.count).toBe(1);
      const plain = Buffer.from("no checksum sent");
      await put(target, "staging/docs/4.x", plain);
      await checkStaged(target.store, "staging/docs/4.x", recordOf(plain), "docs/plain.bin", plain.length);
      expect(gets.count).toBe(2);
    });
  });
}

it("trusts no checksum of an emulator at a given endpoint, unless told it is startEmulator's", async () => {
  const own = await startLocalTarget({ emulator: { port: 0 } });
  targets.push(own);
  const body = Buffer.from("staged");
  for (const [verifiesChecksums, reads] of [[undefined, 1], [false, 1], [true, 0]] as const) {
    const given = await startLocalTarget({ emulator: { endpoint: own.endpoint, ...(verifiesChecksums === undefined ? {} : { verifiesChecksums }) } });
    targets.push(given);
    const gets = countGets(given);
    await put(given, "staging/docs/5.x", body, createHash("sha256").update(body).digest());
    await checkStaged(given.store, "staging/docs/5.x", recordOf(body), "docs/s.bin", body.length);
    expect(gets.count).toBe(reads);
  }
});
