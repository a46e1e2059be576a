// Mirror modes and verification on a target that differs from the source in
// known ways: a missing file, an extra one, content changed behind an
// unchanged size and mtime (small and large files).

import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../../agent/agent.ts";
import { Journal } from "../../agent/journal.ts";
import { recoverSet, runMirror, runVerify, type OperationDeps } from "../../agent/operations.ts";
import { encodeMeta, VerifyReportSchema, verifyReportKey, type OrphanPolicy } from "../../contract/layout.ts";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { MemoryTransport } from "../support/memory-transport.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "srv";
const OVERHEAD = 8192;

describe("mirror modes and verification", () => {
  let src: ReturnType<typeof tempDir>;
  let state: ReturnType<typeof tempDir>;
  let store: MemoryStore;
  let journal: Journal;
  let agent: Agent;
  let deps: OperationDeps;
  const big = randomBytes(4 * BLOCK_SIZE + 100);

  const sent = () => journal.counters(SET).bytesSent;
  const matches = async () => expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));

  beforeEach(async () => {
    src = tempDir("tidemark-src-");
    state = tempDir("tidemark-state-");
    store = new MemoryStore();
    journal = Journal.open(state.path);
    agent = new Agent({
      sets: [{ name: SET, root: src.path, exclude: [] }],
      journal,
      transport: new MemoryTransport(new Applier({ store, log: () => {} }), store),
      monitorEnabled: false,
    });
    deps = {
      agent,
      // Nothing sends in the background here: draining is what brings the verification to the target.
      readReport: async (set, id) => {
        await agent.drain(set);
        const object = await store.get(verifyReportKey(set, id));
        return object && VerifyReportSchema.parse(JSON.parse(object.body.toString()));
      },
      appliedSeq: async (set) => (await readSetStatus(store, set)).lastSeq,
      pollMs: 1,
      timeoutMs: 5_000,
    };
    mkdirSync(join(src.path, "docs/empty"), { recursive: true });
    writeFileSync(join(src.path, "docs/missing.txt"), "will vanish from the target");
    writeFileSync(join(src.path, "docs/same-stat.txt"), "original content");
    writeFileSync(join(src.path, "big.bin"), big);
    await agent.start();
    await agent.drain(SET);
    await matches();

    // The target drifts behind the applier's back.
    await store.delete("data/srv/docs/missing.txt");
    await store.put("data/srv/extra.txt", Buffer.from("not on the source"), encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64) }));
    const sameStat = await store.get("data/srv/docs/same-stat.txt");
    await store.put("data/srv/docs/same-stat.txt", Buffer.from("ORIGINAL CONTENT"), sameStat?.meta ?? {});
    const corrupted = Buffer.from(big);
    corrupted.fill(0, 2 * BLOCK_SIZE + 10, 2 * BLOCK_SIZE + 20);
    await store.put("data/srv/big.bin", corrupted, (await store.get("data/srv/big.bin"))?.meta ?? {});
  });

  afterEach(async () => {
    await agent.stop();
    journal.close();
    src.remove();
    state.remove();
  });

  it("verify reports missing, extra and (deep) different files, and changes nothing without --repair", async () => {
    const shallow = await runVerify(deps, SET, { deep: false, repair: false, orphans: "report" });
    expect(shallow.report).toMatchObject({ missing: ["docs/missing.txt"], extra: ["extra.txt"], different: [] });
    const deep = await runVerify(deps, SET, { deep: true, repair: false, orphans: "report" });
    expect(deep.report.different).toEqual([
      { path: "big.bin", reason: "content", blocks: [2] },
      { path: "docs/same-stat.txt", reason: "content" },
    ]);
    expect(deep.repaired).toBe(0);
    expect(await store.head("data/srv/extra.txt")).toBeDefined();
    expect(await store.head("data/srv/docs/missing.txt")).toBeUndefined();
  });

  it.each<[OrphanPolicy, boolean, boolean]>([
    ["report", true, false],
    ["delete", false, false],
    ["move-aside", false, true],
  ])("handles orphans by policy %s", async (orphans, kept, movedAside) => {
    await runVerify(deps, SET, { deep: false, repair: false, orphans });
    expect((await store.head("data/srv/extra.txt")) !== undefined).toBe(kept);
    const aside = [...store.objects.keys()].filter((k) => k.startsWith("orphans/srv/") && k.endsWith("/extra.txt"));
    expect(aside.length > 0).toBe(movedAside);
  });

  it("diff mirror sends what is missing and removes orphans, but cannot see content behind an unchanged stat", async () => {
    const result = await runMirror(deps, SET, "diff", "delete");
    await agent.drain(SET);
    expect(result.verify?.repaired).toBe(1);
    expect((await store.get("data/srv/docs/missing.txt"))?.body.toString()).toBe("will vanish from the target");
    expect(await store.head("data/srv/extra.txt")).toBeUndefined();
    expect((await store.get("data/srv/docs/same-stat.txt"))?.body.toString()).toBe("ORIGINAL CONTENT");
  });

  it("checksum mirror repairs everything, sending only the differing block of a large file", async () => {
    const before = sent();
    const result = await runMirror(deps, SET, "checksum", "delete");
    await agent.drain(SET);
    await matches();
    expect(result.verify?.repaired).toBe(3);
    // The small files travel whole, the large one as one block; plus manifests and envelopes.
    expect(sent() - before).toBeLessThanOrEqual(BLOCK_SIZE + 100 + OVERHEAD);
    expect(createHash("sha256").update((await store.get("data/srv/big.bin"))?.body ?? Buffer.alloc(0)).digest("hex")).toBe(createHash("sha256").update(big).digest("hex"));
  });

  it("full mirror sends everything again and removes orphans", async () => {
    const before = sent();
    const result = await runMirror(deps, SET, "full", "delete");
    await agent.drain(SET);
    await matches();
    expect(result.scan?.changes).toBeGreaterThanOrEqual(5);
    expect(sent() - before).toBeGreaterThanOrEqual(big.length);
  });

  it("finds content changed on the source behind an unchanged size and mtime (checksum)", async () => {
    const file = join(src.path, "docs/same-stat.txt");
    const { atime, mtime } = statSync(file);
    writeFileSync(file, "ORIGINAL-content");
    utimesSync(file, atime, mtime);
    await runMirror(deps, SET, "checksum", "report");
    await agent.drain(SET);
    expect((await store.get("data/srv/docs/same-stat.txt"))?.body.toString()).toBe("ORIGINAL-content");
  });
});

describe("recovery after the target went out of sync", () => {
  it("restarts the chain and resends only what the target lacks (diff)", async () => {
    const src = tempDir("tidemark-src-");
    const state = tempDir("tidemark-state-");
    const store = new MemoryStore();
    const journal = Journal.open(state.path);
    const transport = new MemoryTransport(new Applier({ store, log: () => {} }), store);
    const big = randomBytes(3 * BLOCK_SIZE);
    writeFileSync(join(src.path, "big.bin"), big);
    const agent = new Agent({
      sets: [{ name: SET, root: src.path, exclude: [] }],
      journal,
      transport,
      targetStatus: (set) => readSetStatus(store, set),
      // deps is defined below; the agent calls this only once started.
      recover: (set, reason) => recoverSet(deps, set, reason, "diff", "report"),
      monitorEnabled: false,
    });
    const deps: OperationDeps = {
      agent,
      readReport: async (set, id) => {
        await agent.drain(set);
        const object = await store.get(verifyReportKey(set, id));
        return object && VerifyReportSchema.parse(JSON.parse(object.body.toString()));
      },
      appliedSeq: async (set) => (await readSetStatus(store, set)).lastSeq,
      pollMs: 1,
    };
    try {
      await agent.start();
      await agent.drain(SET);
      // A message lost on the way: the next one leaves a gap.
      transport.lose = 1;
      writeFileSync(join(src.path, "lost.txt"), "in the lost message");
      await agent.scan(SET);
      await agent.drain(SET);
      writeFileSync(join(src.path, "after.txt"), "after the gap");
      await agent.scan(SET);
      await agent.drain(SET);
      expect((await readSetStatus(store, SET)).state).toBe("out-of-sync");

      const before = journal.counters(SET).bytesSent;
      await agent.checkTarget(SET);
      await agent.drain(SET);
      expect((await readSetStatus(store, SET)).state).toBe("in-sync");
      expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
      // The large file the target already had is not sent again.
      expect(journal.counters(SET).bytesSent - before).toBeLessThan(BLOCK_SIZE);
    } finally {
      await agent.stop();
      journal.close();
      src.remove();
      state.remove();
    }
  });
});
