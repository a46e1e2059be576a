// A snapshot that left an entry out (summary.unreadable: its object could not be read when it was taken) is
// incomplete: its restore names each left-out entry as not restored, and prune's keep N does not count it.
import { existsSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { restoreSnapshot } from "../../agent/restore.ts";
import { dataKey } from "../../contract/layout.ts";
import type { SnapshotSummary } from "../../contract/tasks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { pruneSnapshots, readSnapshot, takeSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { agentHarness } from "../support/harness.ts";
import { oneFileSnapshot } from "../support/snapshots.ts";
import { tempDir } from "../support/tree.ts";

describe("a snapshot that left entries out", () => {
  it("names each left-out entry as not restored, not a silent success", async () => {
    const SET = "links";
    const store = new MemoryStore();
    const h = agentHarness(SET, {}, { store });
    const out = tempDir("tidemark-left-out-");
    try {
      writeFileSync(join(h.src.path, "a.txt"), "a");
      symlinkSync(`/${"t".repeat(3000)}`, join(h.src.path, "long-link"));
      await h.agent.start();
      await h.agent.drain(SET);
      // The link's body altered behind its metadata: the snapshot cannot read it and leaves it out.
      const key = dataKey(SET, "long-link");
      const head = await store.head(key);
      if (!head) throw new Error("the link was not mirrored");
      await store.put(key, Buffer.from(`/${"x".repeat(3000)}`), head.meta);
      const taken = await takeSnapshot(store, SET, { id: "s1", taskId: "t1", seq: null }, { now: new Date() });
      expect(taken.unreadableCount).toBe(1);
      const to = join(out.path, "tree");
      const result = await restoreSnapshot(store, taken, to);
      expect(existsSync(join(to, "a.txt"))).toBe(true);
      expect(existsSync(join(to, "long-link"))).toBe(false);
      expect(result.failures).toEqual([{ path: "long-link", reason: expect.stringContaining("left out of snapshot s1 when it was taken") }]);
    } finally {
      await h.close();
      out.remove();
    }
  });

  it("counts left-out entries the summary does not name", async () => {
    const SET = "s";
    const store = new MemoryStore();
    await snapshot(store, SET, "big", "2026-01-01T00:00:00.000Z", "content", { unreadable: [{ path: "x", problem: "unreadable" }], unreadableCount: 3 });
    const out = tempDir("tidemark-left-out-");
    try {
      const read = await readSnapshot(store, SET, "big");
      const result = await restoreSnapshot(store, read, join(out.path, "tree"));
      expect(result.failures.map((f) => f.path)).toEqual(["x"]);
      expect(result.leftOutUnnamed).toBe(2);
    } finally {
      out.remove();
    }
  });

  it("is not counted toward prune's keep N: the complete one before it stays", async () => {
    const SET = "s";
    const store = new MemoryStore();
    await snapshot(store, SET, "old", "2026-01-01T00:00:00.000Z", "old content");
    await snapshot(store, SET, "complete", "2026-01-02T00:00:00.000Z", "complete content");
    await snapshot(store, SET, "partial", "2026-01-03T00:00:00.000Z", "partial content", { unreadable: [{ path: "gone", problem: "altered" }], unreadableCount: 1 });
    const result = await pruneSnapshots(store, SET, { keep: 1 });
    expect(result.deleted).toEqual(["old"]);
    expect(result.kept).toEqual(["complete", "partial"]);
    expect((await pruneSnapshots(store, SET, { keep: 0 })).deleted).toEqual(["complete", "partial"]);
  });
});

const snapshot = (store: MemoryStore, set: string, id: string, takenAt: string, content: string, leftOut: Pick<SnapshotSummary, "unreadable" | "unreadableCount"> = {}) =>
  oneFileSnapshot(store, { set, id, takenAt, content, ...leftOut });
