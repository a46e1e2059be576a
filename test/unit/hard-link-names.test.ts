// A file with several names in a set (hard links) written through one of them: the watcher reports only that name,
// yet every name must reach the target with the new content in the same journal transaction, so the live mirror and
// any marker (also one sent straight to the queue, with no barrier scan) never see the names out of step.

import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { linkGroupOf } from "../../agent/capture.ts";
import { runVerify } from "../../agent/operations.ts";
import { restoreSnapshot } from "../../agent/restore.ts";
import { dataKey, decodeMeta } from "../../contract/layout.ts";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { listSnapshots, readManifest } from "../../lambdas/tasks/snapshots.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";

let harnesses: Harness[] = [];
afterEach(async () => {
  for (const h of harnesses) await h.close();
  harnesses = [];
});

function harness(): Harness {
  const h = agentHarness(SET);
  harnesses.push(h);
  return h;
}

async function live(h: Harness, path: string): Promise<string | undefined> {
  return (await h.store.get(`data/${SET}/${path}`))?.body.toString();
}

/** The seqs of the puts journaled for each path since `after`. */
function putsSince(h: Harness, after: number): Map<string, number[]> {
  const puts = new Map<string, number[]>();
  for (const record of h.journal.pending(SET, after, 1000)) {
    if (record.op !== "put") continue;
    puts.set(record.path, [...(puts.get(record.path) ?? []), record.seq]);
  }
  return puts;
}

describe("hard links written through one name", () => {
  it("captures every other name of the file with the one the watcher reported, in one transaction", async () => {
    const h = harness();
    mkdirSync(join(h.src.path, "sub"));
    writeFileSync(join(h.src.path, "a"), "old");
    linkSync(join(h.src.path, "a"), join(h.src.path, "sub/b"));
    linkSync(join(h.src.path, "a"), join(h.src.path, "c"));
    writeFileSync(join(h.src.path, "alone"), "alone");
    await h.agent.start();
    await h.agent.drain(SET);
    const before = h.journal.sets.counters(SET).nextSeq - 1;

    writeFileSync(join(h.src.path, "a"), "new content");
    h.agent.hint(SET, "a");
    await h.agent.processHints(SET);
    const puts = putsSince(h, before);
    expect([...puts.keys()].sort()).toEqual(["a", "c", "sub/b"]);
    await h.agent.drain(SET);
    expect(await live(h, "sub/b")).toBe("new content");
    expect(await live(h, "c")).toBe("new content");
    expect(await live(h, "alone")).toBe("alone");
  });

  it("a marker sent straight to the queue (no barrier scan) snapshots every name with the new content, restored as one file", async () => {
    const h = harness();
    writeFileSync(join(h.src.path, "a"), "old");
    linkSync(join(h.src.path, "a"), join(h.src.path, "b"));
    await h.agent.start();
    await h.agent.drain(SET);

    writeFileSync(join(h.src.path, "a"), "new content");
    h.agent.hint(SET, "a");
    await h.agent.processHints(SET);
    await h.agent.drain(SET);
    const body = JSON.stringify({ v: 1, set: SET, task: { id: "console-1", action: "snapshot" } });
    expect(await h.transport.applier.applyMessage({ messageId: "q1", groupId: SET, body })).toMatchObject({ kind: "marker", status: "succeeded" });
    const [summary] = await listSnapshots(h.store, SET);
    if (!summary) throw new Error("no snapshot");
    const entries = await readManifest(h.store, summary);
    const [a, b] = ["a", "b"].map((path) => entries.find((entry) => entry.path === path));
    expect(a?.kind === "file" && b?.kind === "file" && a.sha256 === b.sha256 && a.linkGroup !== undefined && a.linkGroup === b.linkGroup).toBe(true);

    const out = tempDir("tidemark-links-restore-");
    try {
      const to = join(out.path, "r");
      const result = await restoreSnapshot(h.store, summary, to);
      expect(result.failures).toEqual([]);
      expect(result.hardLinks).toBe(1);
      expect(statSync(join(to, "b")).ino).toBe(statSync(join(to, "a")).ino);
      expect(readFileSync(join(to, "b"), "utf8")).toBe("new content");
    } finally {
      out.remove();
    }
  });

  it("keeps the names of a file as they are renamed, deleted and linked again (the index's link groups)", async () => {
    const h = harness();
    writeFileSync(join(h.src.path, "a"), "one");
    await h.agent.start();
    await h.agent.drain(SET);
    // Linked after a was last read: the scan reads a again (its ctime moved) and puts it in the group.
    linkSync(join(h.src.path, "a"), join(h.src.path, "b"));
    linkSync(join(h.src.path, "a"), join(h.src.path, "c"));
    await h.agent.scan(SET);
    await h.agent.drain(SET);

    // Written through the newest name: the older one, which the scan only read, comes along.
    let before = h.journal.sets.counters(SET).nextSeq - 1;
    writeFileSync(join(h.src.path, "b"), "two");
    h.agent.hint(SET, "b");
    await h.agent.processHints(SET);
    expect([...putsSince(h, before).keys()].sort()).toEqual(["a", "b", "c"]);
    await h.agent.drain(SET);

    // Renamed: the group follows the name. Deleted: not captured again.
    renameSync(join(h.src.path, "b"), join(h.src.path, "b2"));
    rmSync(join(h.src.path, "c"));
    for (const path of ["b", "b2", "c"]) h.agent.hint(SET, path);
    await h.agent.processHints(SET);
    await h.agent.drain(SET);
    before = h.journal.sets.counters(SET).nextSeq - 1;
    writeFileSync(join(h.src.path, "a"), "three");
    h.agent.hint(SET, "a");
    await h.agent.processHints(SET);
    expect([...putsSince(h, before).keys()].sort()).toEqual(["a", "b2"]);
    await h.agent.drain(SET);
    expect(await live(h, "b2")).toBe("three");
    expect(await live(h, "c")).toBeUndefined();
    expect(await live(h, "b")).toBeUndefined();

    // Its last other name gone, a file is on its own again: written, it travels alone.
    rmSync(join(h.src.path, "b2"));
    h.agent.hint(SET, "b2");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    before = h.journal.sets.counters(SET).nextSeq - 1;
    writeFileSync(join(h.src.path, "a"), "four");
    h.agent.hint(SET, "a");
    await h.agent.processHints(SET);
    expect([...putsSince(h, before).entries()]).toEqual([["a", [before + 1]]]);
  });

  it("captures each name once when the watcher reports several names of one file", async () => {
    const h = harness();
    writeFileSync(join(h.src.path, "a"), "old");
    linkSync(join(h.src.path, "a"), join(h.src.path, "b"));
    await h.agent.start();
    await h.agent.drain(SET);
    const before = h.journal.sets.counters(SET).nextSeq - 1;
    writeFileSync(join(h.src.path, "b"), "new");
    h.agent.hint(SET, "a");
    h.agent.hint(SET, "b");
    await h.agent.processHints(SET);
    expect([...putsSince(h, before).values()].map((seqs) => seqs.length)).toEqual([1, 1]);
  });

  it("a block repair of a hard-linked file keeps its link group on the target and in the index", async () => {
    const h = harness();
    const big = randomBytes(3 * BLOCK_SIZE + 10);
    writeFileSync(join(h.src.path, "big.bin"), big);
    linkSync(join(h.src.path, "big.bin"), join(h.src.path, "big-too.bin"));
    await h.agent.start();
    await h.agent.drain(SET);
    const group = () => h.store.head(dataKey(SET, "big.bin")).then((object) => decodeMeta(object?.meta)?.linkGroup);
    const linked = await group();
    expect(linked).toMatch(/^[0-9a-f]{16}$/);
    const corrupted = Buffer.from(big);
    corrupted.fill(0, BLOCK_SIZE + 5, BLOCK_SIZE + 9);
    await h.store.put(dataKey(SET, "big.bin"), corrupted, (await h.store.get(dataKey(SET, "big.bin")))?.meta ?? {});
    const result = await runVerify(h.operations(), SET, { deep: true, repair: true, orphans: "report" });
    expect(result.report.different).toEqual([{ path: "big.bin", reason: "content", blocks: [1] }]);
    await h.agent.drain(SET);
    expect((await h.store.get(dataKey(SET, "big.bin")))?.body.equals(big)).toBe(true);
    expect(await group()).toBe(linked);
    expect(h.journal.index.otherNames(SET, linked ?? "", "big-too.bin")).toEqual(["big.bin"]);
  });

  it("a name linked after its file was last read and not scanned since is caught by the next scan, as verify's is", async () => {
    const h = harness();
    writeFileSync(join(h.src.path, "a"), "one");
    await h.agent.start();
    await h.agent.drain(SET);
    // Only the new name is reported (and read): the index does not know yet that a is one of its names.
    linkSync(join(h.src.path, "a"), join(h.src.path, "b"));
    h.agent.hint(SET, "b");
    await h.agent.processHints(SET);
    writeFileSync(join(h.src.path, "b"), "two");
    h.agent.hint(SET, "b");
    await h.agent.processHints(SET);
    await h.agent.drain(SET);
    expect(await live(h, "a")).toBe("one");

    // verify's scan reads a (its stat moved with b's write) and journals it ahead of the comparison: no difference left.
    const result = await runVerify(h.operations(), SET, { deep: true, repair: false, orphans: "report" });
    expect(result.report).toMatchObject({ missing: [], different: [], extra: [] });
    expect(await live(h, "a")).toBe("two");
    expect(h.journal.index.otherNames(SET, linkGroupOfPath(h, "b"), "b")).toEqual(["a"]);
  });
});

function linkGroupOfPath(h: Harness, path: string): string {
  return linkGroupOf(statSync(join(h.src.path, path), { bigint: true })).linkGroup ?? "";
}
