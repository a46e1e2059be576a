// The TargetStore contract: every implementation passes the same suite.

import { createHash } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import { ContentMismatchError, ObjectNotFoundError, type TargetStore } from "../../lambdas/store/store.ts";

/** S3's listing order, computed independently of the code under test: the keys' UTF-8 bytes. */
function byteOrder(keys: Iterable<string>): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8")));
}

/**
 * More than two pages of keys that tell byte order from other orders: the
 * same names in upper and lower case, accents and CJK, characters above
 * U+FFFF (before U+E000-U+FFFF in UTF-16, after them in UTF-8), digits that
 * sort differently as numbers, and deep '/'-heavy paths.
 */
function awkwardKeys(prefix: string): string[] {
  const stems = ["a", "A", "b", "B", "readme", "README", "Readme.md", "é", "E", "z", "Z", "_", "-", "~", "日本", "😀", "\ufffd", "\ue000", "ß", "ss"];
  const keys = new Set<string>();
  for (let i = 0; keys.size < 2_345; i++) {
    const stem = stems[i % stems.length] ?? "x";
    const other = stems[(i * 7 + 3) % stems.length] ?? "y";
    const depth = i % 5;
    const folders = Array.from({ length: depth }, (_, d) => `${d % 2 ? other : stem}${d}`).join("/");
    keys.add(`${prefix}${folders ? `${folders}/` : ""}${stem}${i % 97}${other}${i % 3 ? ".JS" : ".js"}`);
  }
  return [...keys];
}

async function listed(store: TargetStore, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of store.list(prefix)) keys.push(info.key);
  return keys;
}

async function putAll(store: TargetStore, keys: string[]): Promise<void> {
  for (let i = 0; i < keys.length; i += 64) await Promise.all(keys.slice(i, i + 64).map((key) => store.put(key, Buffer.from(key))));
}

export function targetStoreContract(name: string, make: () => Promise<TargetStore>): void {
  describe(`TargetStore contract: ${name}`, () => {
    let store: TargetStore;
    beforeEach(async () => {
      store = await make();
    });

    it("reads a range of an object, and nothing of a missing one", async () => {
      if (!store.getRange) return;
      const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
      await store.put("data/s/ranged", body);
      expect((await store.getRange("data/s/ranged", 100, 50))?.equals(body.subarray(100, 150))).toBe(true);
      expect((await store.getRange("data/s/ranged", 990, 50))?.equals(body.subarray(990))).toBe(true);
      expect(await store.getRange("data/s/missing", 0, 10)).toBeUndefined();
    });

    it("streams an object, a range of it and an older version, with the metadata and the whole size; nothing of a missing one", async () => {
      if (!store.readStream) return;
      const body = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
      const first = await store.put("data/s/read", body, { "tidemark-mode": "644" });
      const bytes = async (stream: { body: AsyncIterable<Uint8Array> } | undefined) => {
        const chunks: Uint8Array[] = [];
        for await (const chunk of stream?.body ?? []) chunks.push(chunk);
        return Buffer.concat(chunks);
      };
      const whole = await store.readStream("data/s/read");
      expect(whole).toMatchObject({ size: body.length, meta: { "tidemark-mode": "644" } });
      expect((await bytes(whole)).equals(body)).toBe(true);
      const range = await store.readStream("data/s/read", { offset: 100_000, length: 50_000 });
      expect(range?.size).toBe(body.length);
      expect((await bytes(range)).equals(body.subarray(100_000, 150_000))).toBe(true);
      // A body left unread is let go.
      (await store.readStream("data/s/read"))?.discard();
      await store.put("data/s/read", Buffer.from("later"));
      if (first.versionId !== undefined) expect((await bytes(await store.readStream("data/s/read", { versionId: first.versionId, offset: 0, length: 10 }))).equals(body.subarray(0, 10))).toBe(true);
      expect(await store.readStream("data/s/missing")).toBeUndefined();
    });

    it("writes a streamed body only when its bytes have the SHA-256 they must, in parts above 8 MiB", async () => {
      if (!store.putStreamed) return;
      const body = Buffer.alloc(17 * 1024 * 1024 + 3);
      for (let i = 0; i + 4 <= body.length; i += 4096) body.writeUInt32LE(i, i);
      const sha256 = createHash("sha256").update(body).digest("hex");
      const read = async (offset: number, length: number) => body.subarray(offset, offset + length);
      await store.put("data/s/streamed", Buffer.from("before"));
      await expect(store.putStreamed("data/s/streamed", { size: body.length, sha256: "0".repeat(64), read }, {})).rejects.toThrow(ContentMismatchError);
      expect((await store.get("data/s/streamed"))?.body.toString()).toBe("before");
      await store.putStreamed("data/s/streamed", { size: body.length, sha256, read }, { "tidemark-mode": "600" });
      const written = await store.get("data/s/streamed");
      expect(written?.body.equals(body)).toBe(true);
      expect(written?.meta).toMatchObject({ "tidemark-mode": "600" });
      const small = Buffer.from("a small body in one request");
      await store.putStreamed("data/s/small", { size: small.length, sha256: createHash("sha256").update(small).digest("hex"), read: async (o, l) => small.subarray(o, o + l) }, {});
      expect((await store.get("data/s/small"))?.body.equals(small)).toBe(true);
    });

    it("returns undefined for a missing key, from get and head", async () => {
      expect(await store.get("data/s/missing")).toBeUndefined();
      expect(await store.head("data/s/missing")).toBeUndefined();
    });

    it("puts and gets bytes and metadata", async () => {
      const body = Buffer.from([0, 1, 2, 255, 10, 13]);
      await store.put("data/s/a b/ü.bin", body, { "tidemark-mode": "644", "tidemark-link": encodeURIComponent("../x y") });
      const object = await store.get("data/s/a b/ü.bin");
      expect(object?.body.equals(body)).toBe(true);
      expect(object?.meta).toMatchObject({ "tidemark-mode": "644", "tidemark-link": "..%2Fx%20y" });
      expect(await store.head("data/s/a b/ü.bin")).toMatchObject({ size: 6, meta: { "tidemark-mode": "644" } });
    });

    it("refuses a put or a copy whose metadata passes S3's 2 KB, writing nothing", async () => {
      const big = { "tidemark-link": "x".repeat(3 * 1024) };
      await expect(store.put("data/s/big-meta", Buffer.from("a"), big)).rejects.toThrow(/metadata/i);
      expect(await store.head("data/s/big-meta")).toBeUndefined();
      await store.put("data/s/small-meta", Buffer.from("a"), { a: "1" });
      await expect(store.copy("data/s/small-meta", "data/s/big-copy", big)).rejects.toThrow(/metadata/i);
      expect(await store.head("data/s/big-copy")).toBeUndefined();
    });

    it("replaces an object on put, including its metadata", async () => {
      await store.put("k", Buffer.from("one"), { a: "1" });
      await store.put("k", Buffer.from("two!"), { b: "2" });
      const object = await store.get("k");
      expect(object?.body.toString()).toBe("two!");
      expect(object?.meta).not.toHaveProperty("a");
      expect(object?.meta).toMatchObject({ b: "2" });
    });

    it("puts an object larger than one request (in parts)", async () => {
      const body = Buffer.alloc(12 * 1024 * 1024 + 7);
      for (let i = 0; i < body.length; i += 4096) body[i] = i % 251;
      const written = await store.put("data/s/large", body, { "tidemark-kind": "file" });
      expect(written.etag).toBeTruthy();
      const object = await store.get("data/s/large");
      expect(object?.body.equals(body)).toBe(true);
      expect(object?.meta).toMatchObject({ "tidemark-kind": "file" });
    });

    it("stores empty objects (directory markers)", async () => {
      await store.put("data/s/dir/", new Uint8Array(), { "tidemark-kind": "dir" });
      expect((await store.get("data/s/dir/"))?.body.length).toBe(0);
    });

    it("copies with replaced metadata, and fails clearly when the source is missing", async () => {
      await store.put("staging/s/1.x", Buffer.from("payload"), { old: "yes" });
      await store.copy("staging/s/1.x", "data/s/dest file", { "tidemark-kind": "file" });
      const copy = await store.get("data/s/dest file");
      expect(copy?.body.toString()).toBe("payload");
      expect(copy?.meta).toMatchObject({ "tidemark-kind": "file" });
      expect(copy?.meta).not.toHaveProperty("old");
      await expect(store.copy("staging/s/none", "data/s/x", {})).rejects.toThrow(ObjectNotFoundError);
    });

    it("copies an object onto itself to replace only its metadata", async () => {
      await store.put("data/s/big", Buffer.from("same bytes"), { "tidemark-mode": "644" });
      await store.copy("data/s/big", "data/s/big", { "tidemark-mode": "600" });
      const object = await store.get("data/s/big");
      expect(object?.body.toString()).toBe("same bytes");
      expect(object?.meta).toEqual({ "tidemark-mode": "600" });
    });

    it("names an object's content by its SHA-256 and the ETag of that version, and copies that version", async () => {
      const body = Buffer.from("staged bytes");
      await store.put("staging/s/1.x", body);
      const content = await store.contentSha256("staging/s/1.x");
      expect(content).toMatchObject({ sha256: createHash("sha256").update(body).digest("hex"), size: body.length });
      expect(content?.etag).toBeTruthy();
      await store.copy("staging/s/1.x", "data/s/f", { a: "1" }, { ifMatch: content?.etag ?? "" });
      expect((await store.get("data/s/f"))?.body.equals(body)).toBe(true);
      expect(await store.contentSha256("staging/s/missing")).toBeUndefined();
    });

    it("answers a put and a copy with the ETag written (a copy keeps its source's)", async () => {
      const md5 = (text: string) => `"${createHash("md5").update(text).digest("hex")}"`;
      expect((await store.put("data/s/w", Buffer.from("written"))).etag).toBe(md5("written"));
      expect((await store.copy("data/s/w", "data/s/c", { a: "1" })).etag).toBe(md5("written"));
    });

    it("on a versioned store, answers each put and copy with the version it made, readable after it is replaced and deleted", async (ctx) => {
      if (!(await store.versioned())) return ctx.skip();
      const first = await store.put("data/s/v", Buffer.from("one"));
      const second = await store.put("data/s/v", Buffer.from("two"));
      const copied = await store.copy("data/s/v", "data/s/w", {});
      const ids = [first.versionId, second.versionId, copied.versionId];
      for (const id of ids) expect(id).toBeTruthy();
      expect(new Set(ids).size).toBe(3);
      expect((await store.head("data/s/w"))?.versionId).toBe(copied.versionId);
      await store.delete("data/s/v");
      await store.put("data/s/w", Buffer.from("three"));
      expect((await store.get("data/s/v", first.versionId))?.body.toString()).toBe("one");
      expect((await store.get("data/s/v", second.versionId))?.body.toString()).toBe("two");
      expect((await store.get("data/s/w", copied.versionId))?.body.toString()).toBe("two");
    });

    it("on an unversioned store, answers writes without a version", async (ctx) => {
      if (await store.versioned()) return ctx.skip();
      expect((await store.put("data/s/u", Buffer.from("one"))).versionId).toBeUndefined();
      expect((await store.copy("data/s/u", "data/s/u2", {})).versionId).toBeUndefined();
    });

    it("deletes, and deleting a missing key succeeds", async () => {
      await store.put("k", Buffer.from("x"));
      await store.delete("k");
      expect(await store.get("k")).toBeUndefined();
      await store.delete("k");
    });

    it("lists a prefix in key order, past a page of results", async () => {
      const keys = Array.from({ length: 1005 }, (_, i) => `data/s/f${String(i).padStart(4, "0")}`);
      await Promise.all(keys.map((k) => store.put(k, Buffer.from("x"))));
      await store.put("data/other/f", Buffer.from("x"));
      const listed: string[] = [];
      for await (const info of store.list("data/s/")) listed.push(info.key);
      expect(listed).toEqual(keys);
    });

    it("lists more than two pages of mixed-case, unicode and deep keys in UTF-8 byte order, each key once", async () => {
      const keys = awkwardKeys("data/s/");
      // Neighbours outside the prefix must not leak in.
      await putAll(store, [...keys, "data/s", "data/r/a", "data/s0/a", "data/S/a"]);
      const result = await listed(store, "data/s/");
      expect(result.length).toBe(keys.length);
      expect(new Set(result).size).toBe(result.length);
      expect(result).toEqual(byteOrder(keys));
    });

    it("lists a sub-prefix of deep keys completely, and nothing for a prefix without keys", async () => {
      const keys = awkwardKeys("data/s/");
      await putAll(store, keys);
      const sub = "data/s/A0/";
      const expected = byteOrder(keys.filter((key) => key.startsWith(sub)));
      expect(expected.length).toBeGreaterThan(0);
      expect(await listed(store, sub)).toEqual(expected);
      expect(await listed(store, "data/none/")).toEqual([]);
    });

    it("lists each object's size, ETag and last-modified time; a new write changes the ETag, a copy keeps it", async () => {
      const before = Date.now() - 5_000;
      await store.put("data/s/one", Buffer.from("first"));
      await store.put("data/s/two", Buffer.from("second!"));
      const first = new Map<string, { size: number; etag?: string; lastModified?: Date }>();
      for await (const info of store.list("data/s/")) first.set(info.key, info);
      const md5 = (text: string) => `"${createHash("md5").update(text).digest("hex")}"`;
      expect(first.get("data/s/one")).toMatchObject({ size: 5, etag: md5("first") });
      expect(first.get("data/s/two")).toMatchObject({ size: 7, etag: md5("second!") });
      const written = first.get("data/s/one")?.lastModified?.getTime() ?? 0;
      expect(written).toBeGreaterThan(before);
      expect(written).toBeLessThanOrEqual(Date.now() + 5_000);

      await store.put("data/s/one", Buffer.from("changed"));
      await store.copy("data/s/two", "data/s/three", {});
      const second = new Map<string, { size: number; etag?: string }>();
      for await (const info of store.list("data/s/")) second.set(info.key, info);
      expect(second.get("data/s/one")?.etag).toBe(md5("changed"));
      expect(second.get("data/s/three")).toMatchObject({ size: 7, etag: md5("second!") });
    });
  });
}
