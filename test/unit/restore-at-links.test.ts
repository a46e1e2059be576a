// restore --at keeps hard links: the history's put entries carry the file's
// link group (as the put record and the object's metadata do), so a moment
// replayed from segments links the files of a group again, as a snapshot's
// restore does; a checkpoint carries it from the objects' metadata.

import { linkSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { restoreAt } from "../../agent/restore-at.ts";
import { segmentsPrefix } from "../../contract/history.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { stateAt } from "../../lambdas/history/replay.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

function harness(store: MemoryStore, checkpointEvery: number): Harness {
  const h = agentHarness(SET, {}, { store, history: { days: 7, checkpointEvery } });
  cleanups.push(() => h.close());
  return h;
}

describe("restore --at and hard links", () => {
  it.each([
    ["replayed from segments", 1000],
    ["read from a checkpoint", 1],
  ])("files that were hard links of one another are restored as hard links (%s)", async (_name, checkpointEvery) => {
    const store = new MemoryStore({ versioned: true });
    const h = harness(store, checkpointEvery);
    const src = h.src.path;
    mkdirSync(join(src, "sub"));
    writeFileSync(join(src, "one.txt"), "shared bytes");
    linkSync(join(src, "one.txt"), join(src, "sub/two.txt"));
    linkSync(join(src, "one.txt"), join(src, "three.txt"));
    writeFileSync(join(src, "alone.txt"), "alone");
    await h.agent.start();
    await h.agent.drain(SET);
    if (checkpointEvery > 1) expect([...store.objects.keys()].some((key) => key.startsWith(segmentsPrefix(SET)))).toBe(true);

    const at = Date.now() + 1000;
    const state = await stateAt(store, SET, at);
    const groups = state.state.kind === "files" ? state.state.entries.filter((e) => e.linkGroup !== undefined).map((e) => e.path) : [];
    expect(groups.sort()).toEqual(["one.txt", "sub/two.txt", "three.txt"]);

    const out = tempDir("tidemark-at-links-");
    cleanups.push(() => out.remove());
    const to = join(out.path, "tree");
    const result = await restoreAt(store, SET, at, to);
    expect(result.failures).toEqual([]);
    expect(result.hardLinks).toBe(2);
    const ino = statSync(join(to, "one.txt")).ino;
    expect(statSync(join(to, "sub/two.txt")).ino).toBe(ino);
    expect(statSync(join(to, "three.txt")).ino).toBe(ino);
    expect(statSync(join(to, "one.txt")).nlink).toBe(3);
    expect(statSync(join(to, "alone.txt")).nlink).toBe(1);
    expect(readFileSync(join(to, "sub/two.txt"), "utf8")).toBe("shared bytes");
  });
});
