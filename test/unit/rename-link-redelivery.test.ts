// A rename redelivered after its copy was made but before its source was
// removed (the invocation died between them), of a symlink written before the
// metadata budget with its target near S3's limit: the copy holds the flag
// instead of the target (withinMetadataLimit), and the redelivery still knows
// the copy for its own work: it removes the source and copies nothing again.

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { dataKey, decodeMeta, encodeMeta, META } from "../../contract/layout.ts";
import { USER_METADATA_LIMIT_BYTES, userMetadataBytes } from "../../contract/link-meta.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { symlinkTarget } from "../../lambdas/link-targets.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { CopyOptions, WriteResult } from "../../lambdas/store/store.ts";
import { messageBody, signedIncoming, TEST_KEY } from "../support/messages.ts";

const SET = "links";

/** Fails the first removal of `failOnce` (the invocation dying after the copy), and counts copies. */
class DiesAfterCopy extends MemoryStore {
  copies = 0;
  failOnce: string | undefined;
  override async copy(from: string, to: string, meta: Record<string, string>, options?: CopyOptions): Promise<WriteResult> {
    this.copies += 1;
    return super.copy(from, to, meta, options);
  }
  override async delete(key: string): Promise<void> {
    if (key === this.failOnce) {
      this.failOnce = undefined;
      throw new Error("the invocation died");
    }
    return super.delete(key);
  }
}

describe("a redelivered rename of a symlink whose target moved to the body in the copy", () => {
  it("is judged applied: the source is removed and nothing is copied again", async () => {
    const store = new DiesAfterCopy();
    const applier = new Applier({ store, log: () => {} });
    const bare = { ...encodeMeta({ kind: "symlink", mode: 0o777, mtimeNs: "1700000000000000000", linkTarget: "x" }), [META.sha256]: "0".repeat(64) };
    const target = "p".repeat(USER_METADATA_LIMIT_BYTES - 8 - userMetadataBytes(bare) + 1);
    const old = { ...bare, [META.linkTarget]: target, [META.sha256]: createHash("sha256").update(target).digest("hex") };
    await store.put(dataKey(SET, "old"), Buffer.from(target), old);
    store.failOnce = dataKey(SET, "old");
    const message = () => applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [{ seq: 1, op: "rename", from: "old", to: "new" }]), TEST_KEY));
    await expect(message()).rejects.toThrow(/the invocation died/);
    expect(store.copies).toBe(1);
    expect((await store.head(dataKey(SET, "new")))?.meta[META.linkInBody]).toBe("1");

    expect(await message()).toMatchObject({ kind: "applied" });
    expect(store.copies).toBe(1);
    expect(await store.head(dataKey(SET, "old"))).toBeUndefined();
    const meta = decodeMeta((await store.head(dataKey(SET, "new")))?.meta);
    expect(meta && (await symlinkTarget(store, dataKey(SET, "new"), meta))).toBe(target);
  });
});
