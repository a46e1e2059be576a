// Prune deletes preserved content only when it knows every snapshot the set
// keeps: a summary it cannot read may name any content, so nothing is swept
// then, and the result names the summary. Listing snapshots survives a
// corrupt summary instead of failing every later snapshot.

import { describe, expect, it } from "vitest";
import { preservedKey, snapshotSummaryKey } from "../../contract/layout.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { listSnapshots, pruneSnapshots } from "../../lambdas/tasks/snapshots.ts";
import { sha256Of as sha } from "../support/content.ts";
import { oneFileSnapshot } from "../support/snapshots.ts";

const SET = "s";

const snapshotOf = (store: MemoryStore, id: string, takenAt: string, content: string) => oneFileSnapshot(store, { set: SET, id, takenAt, content });

describe("prune and unreadable snapshot summaries", () => {
  it("sweeps content no snapshot names when every summary reads", async () => {
    const store = new MemoryStore();
    await snapshotOf(store, "one", "2026-01-01T00:00:00.000Z", "kept content");
    await store.put(preservedKey(SET, sha("orphan")), Buffer.from("orphan"));
    const result = await pruneSnapshots(store, SET, { keep: 10, sweep: true });
    expect(result.contentDeleted).toBe(1);
    expect(result.unreadable).toBeUndefined();
    expect(await store.head(preservedKey(SET, sha("kept content")))).toBeDefined();
  });

  it("deletes no content while a summary cannot be read, and names it", async () => {
    const store = new MemoryStore();
    await snapshotOf(store, "one", "2026-01-01T00:00:00.000Z", "content of one");
    await snapshotOf(store, "two", "2026-01-02T00:00:00.000Z", "content of two");
    await store.put(snapshotSummaryKey(SET, "two"), Buffer.from("{ not json"));
    await store.put(preservedKey(SET, sha("orphan")), Buffer.from("orphan"));

    expect((await listSnapshots(store, SET)).map((s) => s.id)).toEqual(["one"]);
    const result = await pruneSnapshots(store, SET, { keep: 10, sweep: true });
    expect(result.unreadable).toEqual([snapshotSummaryKey(SET, "two")]);
    expect(result.contentDeleted).toBe(0);
    for (const content of ["content of one", "content of two", "orphan"]) expect(await store.head(preservedKey(SET, sha(content))), content).toBeDefined();
  });

  it("still deletes the readable snapshots beyond the ones to keep, and not the unreadable one", async () => {
    const store = new MemoryStore();
    await snapshotOf(store, "one", "2026-01-01T00:00:00.000Z", "content of one");
    await snapshotOf(store, "two", "2026-01-02T00:00:00.000Z", "content of two");
    await snapshotOf(store, "three", "2026-01-03T00:00:00.000Z", "content of three");
    await store.put(snapshotSummaryKey(SET, "three"), Buffer.from(JSON.stringify({ id: "three" })));
    const result = await pruneSnapshots(store, SET, { keep: 1, sweep: true });
    expect(result.deleted).toEqual(["one"]);
    expect(result.kept).toEqual(["two"]);
    expect(await store.head(snapshotSummaryKey(SET, "three"))).toBeDefined();
    // Its content is still there for it, and so is the rest until a sweep knows every snapshot.
    expect(await store.head(preservedKey(SET, sha("content of three")))).toBeDefined();
    expect(result.contentDeleted).toBe(0);
  });
});
