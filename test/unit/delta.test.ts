// Delta transfer: a change inside a large file travels as the blocks that
// changed, a rename moves the object, and the applier rebuilds and checks.

import { createHash, randomBytes } from "node:crypto";
import { chmodSync, openSync, readFileSync, renameSync, truncateSync, writeFileSync, writeSync, closeSync, appendFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Agent } from "../../agent/agent.ts";
import { Journal } from "../../agent/journal.ts";
import { encodeMeta } from "../../contract/layout.ts";
import { BLOCK_SIZE, encodeInline, parseMessage, BadMessageError } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { MemoryTransport } from "../support/memory-transport.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "vm";
const MiB = 1024 * 1024;
/** Envelope, record fields and base64 of a message: what a delta may add to its blocks. */
const OVERHEAD = 4096;

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

describe("delta transfer", () => {
  let src: ReturnType<typeof tempDir>;
  let state: ReturnType<typeof tempDir>;
  let store: MemoryStore;
  let transport: MemoryTransport;
  let journal: Journal;
  let agent: Agent;

  const sent = () => journal.counters(SET).bytesSent;
  const converge = async () => {
    await agent.scan(SET);
    await agent.drain(SET);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
  };
  /** Bytes sent by one step, the target checked against the source after it. */
  const sentBy = async (step: () => void | Promise<void>) => {
    const before = sent();
    await step();
    await converge();
    return sent() - before;
  };

  beforeEach(async () => {
    src = tempDir("tidemark-src-");
    state = tempDir("tidemark-state-");
    store = new MemoryStore();
    transport = new MemoryTransport(new Applier({ store, log: () => {} }), store);
    journal = Journal.open(state.path);
    agent = new Agent({ sets: [{ name: SET, root: src.path, exclude: [] }], journal, transport, targetStatus: (set) => readSetStatus(store, set), monitorEnabled: false });
    writeFileSync(join(src.path, "disk.img"), randomBytes(64 * MiB));
    await agent.start();
    await converge();
  });

  afterEach(async () => {
    await agent.stop();
    journal.close();
    src.remove();
    state.remove();
  });

  it("sends one block for a 1-byte change in a 64 MiB file", async () => {
    const bytes = await sentBy(() => {
      const fd = openSync(join(src.path, "disk.img"), "r+");
      writeSync(fd, Buffer.from([0x5a]), 0, 1, 40 * MiB + 123);
      closeSync(fd);
    });
    expect(bytes).toBeGreaterThanOrEqual(BLOCK_SIZE);
    expect(bytes).toBeLessThanOrEqual(BLOCK_SIZE + OVERHEAD);
    expect(sha((await store.get("data/vm/disk.img"))?.body ?? Buffer.alloc(0))).toBe(sha(readFileSync(join(src.path, "disk.img"))));
  });

  it("sends only the tail of an append, and nothing but metadata for a chmod", async () => {
    const appended = await sentBy(() => appendFileSync(join(src.path, "disk.img"), randomBytes(700 * 1024)));
    // 64 MiB is a whole number of blocks: the append fills one new block and part of another.
    expect(appended).toBeLessThanOrEqual(700 * 1024 + OVERHEAD);
    const chmodded = await sentBy(() => chmodSync(join(src.path, "disk.img"), 0o600));
    expect(chmodded).toBeLessThanOrEqual(OVERHEAD);
    expect((await store.head("data/vm/disk.img"))?.meta["tidemark-mode"]).toBe("600");
  });

  it("follows a truncation without resending the part that stayed", async () => {
    const bytes = await sentBy(() => truncateSync(join(src.path, "disk.img"), 10 * MiB + 5));
    // Only the new, shorter last block travels.
    expect(bytes).toBeLessThanOrEqual(BLOCK_SIZE + OVERHEAD);
  });

  it("sends the whole file when most of it changed", async () => {
    const bytes = await sentBy(() => writeFileSync(join(src.path, "disk.img"), randomBytes(64 * MiB)));
    expect(bytes).toBeGreaterThanOrEqual(64 * MiB);
    expect(readdirSync(journal.spoolDir)).toEqual([]);
  });

  it("moves a renamed large file on the target instead of sending it again", async () => {
    const before = sent();
    renameSync(join(src.path, "disk.img"), join(src.path, "disk-renamed.img"));
    agent.hint(SET, "disk.img");
    agent.hint(SET, "disk-renamed.img");
    await agent.processHints(SET);
    await agent.drain(SET);
    expect(sent() - before).toBeLessThanOrEqual(OVERHEAD);
    expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
    expect(await store.head("data/vm/disk.img")).toBeUndefined();
    expect(readdirSync(journal.spoolDir)).toEqual([]);
    // The index moved with it: the next change is a delta again.
    const changed = await sentBy(() => {
      const fd = openSync(join(src.path, "disk-renamed.img"), "r+");
      writeSync(fd, Buffer.from("x"), 0, 1, 5);
      closeSync(fd);
    });
    expect(changed).toBeLessThanOrEqual(BLOCK_SIZE + OVERHEAD);
  });

  it("puts the set out of sync when the target lost the delta's base, and a resync repairs it", async () => {
    // Someone overwrote the replica behind the applier's back.
    await store.put("data/vm/disk.img", Buffer.from("tampered"), encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: sha(Buffer.from("tampered")) }));
    const fd = openSync(join(src.path, "disk.img"), "r+");
    writeSync(fd, Buffer.from("y"), 0, 1, 0);
    closeSync(fd);
    await agent.scan(SET);
    await agent.drain(SET);
    const status = await readSetStatus(store, SET);
    expect(status.state).toBe("out-of-sync");
    expect(status.reason).toMatch(/delta base of disk\.img is not the content the agent changed/);
    await agent.checkTarget(SET);
    await converge();
    expect((await readSetStatus(store, SET)).state).toBe("in-sync");
  });
});

describe("delta messages on the wire", () => {
  const base = Buffer.alloc(BLOCK_SIZE * 2 + 10, 1);
  const next = Buffer.from(base);
  next[BLOCK_SIZE + 3] = 9;
  const block1 = next.subarray(BLOCK_SIZE, BLOCK_SIZE * 2);
  const record = (blocks: number[], content: Uint8Array, over: Record<string, unknown> = {}) => ({
    seq: 2,
    op: "put",
    path: "f.img",
    size: next.length,
    mode: 0o644,
    mtimeNs: "5",
    sha256: sha(next),
    content: encodeInline(content),
    delta: { base: sha(base), blocks },
    ...over,
  });
  const body = (r: object) => JSON.stringify({ v: 1, set: "s", records: [r] });

  it.each([
    ["blocks out of order", [1, 0], /increasing order/],
    ["a block past the end", [3], /past the end/],
  ])("refuses %s", (_label, blocks, message) => {
    expect(() => parseMessage(body(record(blocks, block1)))).toThrow(BadMessageError);
    expect(() => parseMessage(body(record(blocks, block1)))).toThrow(message);
  });

  it("rebuilds from the base, and rejects blocks of the wrong length without writing", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    await store.put("data/s/f.img", base, encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: sha(base) }));
    await store.put("state/s/status.json", Buffer.from(JSON.stringify({ set: "s", lastSeq: 1, state: "in-sync", appliedRecords: 1, appliedBytes: 0, updatedAt: "x" })));
    const bad = await applier.applyMessage({ messageId: "m1", groupId: "s", body: body(record([1], block1.subarray(1))) });
    expect(bad.kind).toBe("rejected");
    expect((await store.get("data/s/f.img"))?.body.equals(base)).toBe(true);
    const good = await applier.applyMessage({ messageId: "m2", groupId: "s", body: body(record([1], block1)) });
    expect(good).toMatchObject({ kind: "applied", bytes: BLOCK_SIZE });
    expect((await store.get("data/s/f.img"))?.body.equals(next)).toBe(true);
  });
});
