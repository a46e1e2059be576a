import { chmodSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent, lingerBeforeSend } from "../../agent/agent.ts";
import { Journal } from "../../agent/journal.ts";
import { RetryingTransport } from "../../agent/transport/retry.ts";
import { TransportError } from "../../agent/transport/transport.ts";
import { MAX_MESSAGE_BYTES } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { MemoryTransport } from "../support/memory-transport.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

describe("agent against an in-memory target", () => {
  let src: ReturnType<typeof tempDir>;
  let state: ReturnType<typeof tempDir>;
  let store: MemoryStore;
  let transport: MemoryTransport;
  let journal: Journal;
  let agent: Agent;
  const SET = "docs";

  const converge = async () => {
    await agent.scan(SET);
    await agent.drain(SET);
    const skip = (path: string) => path.endsWith(".tmp");
    expect(await pictureOfTarget(store, SET, { dirMtimes: true })).toEqual(await pictureOfSource(src.path, { dirMtimes: true, skip }));
  };

  beforeEach(async () => {
    src = tempDir("tidemark-src-");
    state = tempDir("tidemark-state-");
    store = new MemoryStore();
    transport = new MemoryTransport(new Applier({ store, log: () => {} }), store);
    journal = Journal.open(state.path);
    agent = new Agent({
      sets: [{ name: SET, root: src.path, exclude: ["*.tmp", "cache/**"] }],
      journal,
      transport,
      targetStatus: (set) => readSetStatus(store, set),
      monitorEnabled: false,
    });
  });

  afterEach(async () => {
    await agent.stop();
    journal.close();
    src.remove();
    state.remove();
  });

  it("mirrors a tree: nested files, modes, mtimes, symlinks, empty folders", async () => {
    mkdirSync(join(src.path, "a/b/c"), { recursive: true });
    mkdirSync(join(src.path, "empty"));
    writeFileSync(join(src.path, "a/one.txt"), "one");
    writeFileSync(join(src.path, "a/b/two.bin"), randomBytes(5000));
    writeFileSync(join(src.path, "a/b/c/exec.sh"), "#!/bin/sh\n");
    chmodSync(join(src.path, "a/b/c/exec.sh"), 0o750);
    chmodSync(join(src.path, "empty"), 0o700);
    symlinkSync("a/one.txt", join(src.path, "link"));
    symlinkSync("/nonexistent/target", join(src.path, "a/dangling"));
    utimesSync(join(src.path, "a/one.txt"), new Date("2001-02-03T04:05:06.789Z"), new Date("2001-02-03T04:05:06.789Z"));
    writeFileSync(join(src.path, "skip.tmp"), "excluded");
    await agent.start();
    await converge();
    expect(await store.get("data/docs/skip.tmp")).toBeUndefined();
  });

  it("converges after modify, delete, rename, chmod, type changes and tree removal", async () => {
    mkdirSync(join(src.path, "d/e"), { recursive: true });
    for (let i = 0; i < 20; i++) writeFileSync(join(src.path, `d/e/f${i}`), `file ${i}`);
    writeFileSync(join(src.path, "x"), "x");
    writeFileSync(join(src.path, "y"), "y");
    await agent.start();
    await converge();

    writeFileSync(join(src.path, "x"), "x changed, longer");
    renameSync(join(src.path, "y"), join(src.path, "y2"));
    chmodSync(join(src.path, "y2"), 0o600);
    rmSync(join(src.path, "d"), { recursive: true });
    writeFileSync(join(src.path, "d"), "d is a file now");
    mkdirSync(join(src.path, "x-dir"));
    symlinkSync("x", join(src.path, "x-dir/to-x"));
    await converge();

    rmSync(join(src.path, "x-dir"), { recursive: true });
    mkdirSync(join(src.path, "x-dir"));
    await converge();
    expect(readdirSync(src.path).sort()).toEqual(["d", "x", "x-dir", "y2"]);
  });

  it("captures hinted paths without a full scan, new folders with their contents", async () => {
    await agent.start();
    mkdirSync(join(src.path, "new/deep"), { recursive: true });
    writeFileSync(join(src.path, "new/deep/file"), "content");
    agent.hint(SET, "new");
    await agent.processHints(SET);
    await agent.drain(SET);
    expect((await store.get("data/docs/new/deep/file"))?.body.toString()).toBe("content");
  });

  it("packs many small changes into few messages, each within the size budget", async () => {
    for (let i = 0; i < 2000; i++) writeFileSync(join(src.path, `small-${i}`), `content of file ${i}\n`.repeat(20));
    await agent.start();
    await converge();
    expect(transport.bodies.length).toBeLessThanOrEqual(40);
    for (const body of transport.bodies) expect(Buffer.byteLength(body)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
  });

  it.each([
    ["zstd", /"encoding":"zstd\+base64"/],
    ["none", /"encoding":"base64"/],
  ] as const)("compresses inline content as configured (%s), and never what does not shrink", async (compression, encoding) => {
    writeFileSync(join(src.path, "text.txt"), "compressible line\n".repeat(500));
    writeFileSync(join(src.path, "random.bin"), randomBytes(2000));
    const configured = new Agent({ sets: [{ name: SET, root: src.path, exclude: [] }], journal, transport, compression, monitorEnabled: false });
    await configured.start();
    await configured.drain(SET);
    const body = transport.bodies.join("\n");
    expect(body).toMatch(encoding);
    expect(body).not.toMatch(compression === "none" ? /zstd|gzip/ : /gzip/);
    expect(JSON.parse(transport.bodies[0] ?? "{}").records.find((r: { path?: string }) => r.path === "random.bin").content.encoding).toBe("base64");
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
    await configured.stop();
  });

  it("stages large files (spooled, then removed from the spool once sent)", async () => {
    const big = randomBytes(3 * 1024 * 1024 + 17);
    writeFileSync(join(src.path, "big.bin"), big);
    writeFileSync(join(src.path, "medium.bin"), randomBytes(400 * 1024));
    await agent.start();
    await converge();
    expect((await store.get("data/docs/big.bin"))?.body.equals(big)).toBe(true);
    expect(transport.stagedBytes).toBe(big.length + 400 * 1024);
    expect(readdirSync(journal.spoolDir)).toEqual([]);
    expect([...store.objects.keys()].filter((k) => k.startsWith("staging/"))).toEqual([]);
  });

  it("never drops a journaled record when sends fail", async () => {
    for (let i = 0; i < 50; i++) writeFileSync(join(src.path, `f${i}`), `v${i}`);
    const retrying = new RetryingTransport(transport, { baseDelayMs: 1, maxDelayMs: 5 });
    const flaky = new Agent({ sets: [{ name: SET, root: src.path, exclude: [] }], journal, transport: retrying, monitorEnabled: false });
    transport.failures.push(
      new TransportError("throttled", true),
      Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:4566"), { code: "ECONNREFUSED" }),
      Object.assign(new Error("internal"), { $metadata: { httpStatusCode: 503 } }),
    );
    await flaky.start();
    await flaky.drain(SET);
    expect(transport.failures).toEqual([]);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
    expect(journal.sets.counters(SET).backlogRecords).toBe(0);
  });

  it("resyncs with a full mirror when the target went out of sync", async () => {
    writeFileSync(join(src.path, "a"), "1");
    await agent.start();
    await agent.drain(SET);
    transport.lose = 1;
    writeFileSync(join(src.path, "a"), "2 (lost in transit)");
    await agent.scan(SET);
    await agent.drain(SET);
    writeFileSync(join(src.path, "b"), "3");
    await agent.scan(SET);
    await agent.drain(SET);
    expect((await readSetStatus(store, SET)).state).toBe("out-of-sync");
    await agent.checkTarget(SET);
    await agent.drain(SET);
    expect((await readSetStatus(store, SET)).state).toBe("in-sync");
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
  });

  it("picks up after a restart what changed while it was down", async () => {
    writeFileSync(join(src.path, "a"), "1");
    await agent.start();
    await agent.drain(SET);
    await agent.stop();
    writeFileSync(join(src.path, "a"), "changed while down");
    rmSync(join(src.path, "a"));
    writeFileSync(join(src.path, "c"), "new while down");
    agent = new Agent({ sets: [{ name: SET, root: src.path, exclude: [] }], journal, transport, monitorEnabled: false });
    await agent.start();
    await agent.drain(SET);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
    expect(existsSync(join(src.path, "a"))).toBe(false);
  });
});

describe("packing under a stream of changes", () => {
  it("sends a lone change at once, waits a moment while changes stream in, and not when a backlog fills messages anyway", () => {
    expect(lingerBeforeSend(10_000, 1)).toBe(0);
    expect(lingerBeforeSend(20, 8)).toBeGreaterThan(0);
    expect(lingerBeforeSend(20, 0)).toBe(0);
    expect(lingerBeforeSend(20, 5_000)).toBe(0);
  });
});
