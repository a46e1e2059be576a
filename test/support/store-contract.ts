// The TargetStore contract: every implementation passes the same suite.

import { createHash } from "node:crypto";
import { beforeEach, describe, expect, it } from "vitest";
import { ObjectNotFoundError, type TargetStore } from "../../lambdas/store/store.ts";

export function targetStoreContract(name: string, make: () => Promise<TargetStore>): void {
  describe(`TargetStore contract: ${name}`, () => {
    let store: TargetStore;
    beforeEach(async () => {
      store = await make();
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
      await store.put("data/s/large", body, { "tidemark-kind": "file" });
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
  });
}
