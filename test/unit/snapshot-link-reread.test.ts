// A snapshot of a symlink whose target lives in its object's body, on an
// unversioned bucket: the object replaced between its HEAD and its body's GET
// is read again from a fresh HEAD (the snapshot records the target read), and
// one whose target cannot be read at all fails the snapshot naming the link
// rather than recording an empty target.

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { dataKey, encodeMeta } from "../../contract/layout.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { ObjectHead } from "../../lambdas/store/store.ts";
import { liveManifest, SnapshotError } from "../../lambdas/tasks/snapshots.ts";

const SET = "links";
const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");
const long = (c: string) => `/${c.repeat(3000)}`;

async function putLink(store: MemoryStore, path: string, target: string, bodySha = sha256(target)): Promise<void> {
  await store.put(dataKey(SET, path), Buffer.from(target), encodeMeta({ kind: "symlink", mode: 0o777, mtimeNs: "1700000000000000000", sha256: bodySha, linkInBody: true }));
}

/** Replaces the link right after the first HEAD of it (the applier of another writer going on). */
class ReplacedAfterHead extends MemoryStore {
  replace: (() => Promise<void>) | undefined;
  override async head(key: string): Promise<ObjectHead | undefined> {
    const head = await super.head(key);
    const replace = this.replace;
    this.replace = undefined;
    await replace?.();
    return head;
  }
}

describe("a snapshot of a symlink kept in its body", () => {
  it("reads the target again when the link was replaced between its HEAD and its GET", async () => {
    const store = new ReplacedAfterHead();
    await putLink(store, "l", long("a"));
    store.replace = () => putLink(store, "l", long("b"));
    const entries = await liveManifest(store, SET);
    expect(entries).toEqual([expect.objectContaining({ path: "l", kind: "symlink", link: long("b") })]);
  });

  it("fails naming the link when its target cannot be read, never recording an empty one", async () => {
    const store = new MemoryStore();
    await putLink(store, "l", long("a"), sha256("something else"));
    await expect(liveManifest(store, SET)).rejects.toThrow(SnapshotError);
    await expect(liveManifest(store, SET)).rejects.toThrow(/^l: its symlink target .* could not be read/);
  });
});
