// A symlink whose target is kept in its object's body and cannot be read (the
// body was altered): a history checkpoint due under a message leaves it out and
// names it in the status rather than failing every message of the set; a
// restore --at of that moment names it as not restorable, never an empty link.
// A snapshot leaves it out and names it, holding the rest of the set (it once
// failed whole, every snapshot of the set until the link changed); its marker's
// task fails naming it, so it is never taken for the whole set. A link that
// became a file between its HEAD and its GET is taken as the file it is now.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { restoreAt } from "../../agent/restore-at.ts";
import { findProblems } from "../../agent/set-health.ts";
import { dataKey, encodeMeta } from "../../contract/layout.ts";
import { listCheckpoints } from "../../lambdas/history/history-store.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import type { ObjectHead } from "../../lambdas/store/store.ts";
import { readTaskResult } from "../../lambdas/target/readers.ts";
import { snapshotProblem } from "../../lambdas/tasks/snapshot-checks.ts";
import { listSnapshots, liveManifest, readManifest, takeSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

const SET = "links";
const long = `/${"t".repeat(3000)}`;
const sha256 = (bytes: string) => createHash("sha256").update(bytes).digest("hex");

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

/** Alters the body of the link object, keeping its metadata (a damaged or tampered object). */
async function tamper(store: MemoryStore, path: string): Promise<void> {
  const key = dataKey(SET, path);
  const head = await store.head(key);
  if (!head) throw new Error(`${key} is not on the target`);
  await store.put(key, Buffer.from(`/${"x".repeat(3000)}`), head.meta);
}

describe("an unreadable symlink object", () => {
  it("is left out of a history checkpoint and named, while the set keeps applying", async () => {
    const store = new MemoryStore();
    const h: Harness = agentHarness(SET, {}, { store, history: { days: 7, checkpointEvery: 1 } });
    cleanups.push(() => h.close());
    const src = h.src.path;
    writeFileSync(join(src, "a.txt"), "a");
    symlinkSync(long, join(src, "long-link"));
    await h.agent.start();
    await h.agent.drain(SET);
    await tamper(store, "long-link");

    // The next message makes a checkpoint due: it reads every object, the tampered link too.
    mkdirSync(join(src, "more"));
    writeFileSync(join(src, "more/b.txt"), "b");
    await h.agent.scan(SET);
    await h.agent.drain(SET);

    const status = await readSetStatus(store, SET);
    expect(status?.state).toBe("in-sync");
    expect(status?.lastSeq).toBe(h.journal.sets.counters(SET).sentSeq);
    expect(status?.lastSeq).toBe(h.journal.sets.counters(SET).nextSeq - 1);
    expect(status?.checkpointUnreadable?.entries.map((e) => e.path)).toEqual(["long-link"]);
    expect(status?.checkpointUnreadable?.entries[0]?.reason).toMatch(/long-link: its symlink target .* could not be read/);
    const facts = { set: SET, counters: h.journal.sets.counters(SET), generation: undefined, now: new Date() };
    const named = findProblems({ ...facts, target: { status } }).find((p) => p.kind === "checkpoint-unreadable");
    expect(named?.message).toMatch(/could not read 1 entry of the live mirror \(long-link\)/);
    const newest = (await listCheckpoints(store, SET)).at(-1);
    expect(newest?.unreadable?.map((u) => u.path)).toEqual(["long-link"]);

    const out = tempDir("tidemark-unreadable-");
    cleanups.push(() => out.remove());
    const to = join(out.path, "tree");
    const result = await restoreAt(store, SET, Date.now() + 1000, to);
    expect(result.failures).toEqual([{ path: "long-link", reason: expect.stringMatching(/^not restorable at this moment: the history checkpoint could not read it/) }]);
    expect(existsSync(join(to, "long-link"))).toBe(false);
    expect(existsSync(join(to, "more/b.txt"))).toBe(true);

    // The link sent again (a full mirror would): the next checkpoint reads everything, and nothing is named any more.
    symlinkSync(long, join(src, "long-link-2"));
    rmSync(join(src, "long-link"));
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    const after = await readSetStatus(store, SET);
    expect(after?.checkpointUnreadable).toBeUndefined();
    expect(findProblems({ ...facts, target: { status: after } }).map((p) => p.kind)).not.toContain("checkpoint-unreadable");

    await tamper(store, "long-link-2");
    const taken = await takeSnapshot(store, SET, { id: "s1", taskId: "t1", seq: null }, { now: new Date() });
    expect(taken.unreadable).toEqual([{ path: "long-link-2", problem: expect.stringMatching(/^its symlink target .* could not be read/) }]);
    expect(taken.unreadableCount).toBe(1);
    expect((await readManifest(store, taken)).map((entry) => entry.path)).toEqual(["a.txt", "more", "more/b.txt"]);
    expect(snapshotProblem(taken)).toMatch(/^snapshot s1 left out entries of the live mirror it could not read: long-link-2: its symlink target/);
  });

  it("fails the marker's snapshot task naming it, with the rest of the set in the snapshot and the digest naming the difference", async () => {
    const store = new MemoryStore();
    const h: Harness = agentHarness(SET, {}, { store });
    cleanups.push(() => h.close());
    writeFileSync(join(h.src.path, "a.txt"), "a");
    symlinkSync(long, join(h.src.path, "long-link"));
    await h.agent.start();
    await h.agent.drain(SET);
    await tamper(store, "long-link");

    for (const attempt of [1, 2]) {
      const marker = await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
      await h.agent.drain(SET);
      const result = await readTaskResult(store, SET, marker.id);
      expect(result?.status, `snapshot ${attempt}`).toBe("failed");
      expect(result?.error).toMatch(/left out entries of the live mirror it could not read: long-link: its symlink target/);
      expect(result?.error).toMatch(/does not match the source at the marker .*long-link/);
      const summary = (await listSnapshots(store, SET)).at(-1);
      expect(summary?.digest?.status).toBe("mismatch");
      expect(summary && (await readManifest(store, summary)).map((entry) => entry.path)).toEqual(["a.txt"]);
    }
    // The set goes on: later changes apply.
    writeFileSync(join(h.src.path, "b.txt"), "b");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect((await store.get(dataKey(SET, "b.txt")))?.body.toString()).toBe("b");
  });

  it("is taken as the file it became between its HEAD and its GET", async () => {
    class BecomesFile extends MemoryStore {
      replace: (() => Promise<void>) | undefined;
      override async head(key: string): Promise<ObjectHead | undefined> {
        const head = await super.head(key);
        const replace = this.replace;
        this.replace = undefined;
        await replace?.();
        return head;
      }
    }
    const store = new BecomesFile();
    const key = dataKey(SET, "l");
    await store.put(key, Buffer.from(long), encodeMeta({ kind: "symlink", mode: 0o777, mtimeNs: "1700000000000000000", sha256: sha256(long), linkInBody: true }));
    store.replace = async () => {
      await store.put(key, Buffer.from("now a file"), encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1700000000000000001", sha256: sha256("now a file") }));
    };
    const entries = await liveManifest(store, SET);
    expect(entries).toEqual([expect.objectContaining({ path: "l", kind: "file", size: 10, sha256: sha256("now a file") })]);
  });
});
