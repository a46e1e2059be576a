import { beforeEach, describe, expect, it } from "vitest";
import { dataKey, decodeMeta, stagingKey, statusKey } from "../../contract/layout.ts";
import type { WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { pendingFolderWrites } from "../../lambdas/applier/folder-writes.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { messageBody, putRecord, signedIncoming, TEST_KEY } from "../support/messages.ts";

describe("applier", () => {
  let store: MemoryStore;
  let applied: number[];
  let applier: Applier;
  let rejections: string[];
  let n = 0;
  const deliver = (set: string, records: WireRecord[], groupId: string = set) =>
    applier.applyMessage(signedIncoming(`m${++n}`, set, messageBody(set, records), TEST_KEY, groupId));
  const text = async (set: string, path: string) => (await store.get(dataKey(set, path)))?.body.toString();

  beforeEach(() => {
    store = new MemoryStore();
    applied = [];
    rejections = [];
    applier = new Applier({ store, observer: { applied: (_set, record) => applied.push(record.seq) }, log: (line) => rejections.push(line) });
  });

  it("applies records in seq order and keeps metadata on the objects", async () => {
    await deliver("docs", [
      { seq: 1, op: "mkdir", path: "d", mode: 0o750, mtimeNs: "10" },
      putRecord(2, "d/a.txt", "first", 0o600),
      putRecord(3, "d/a.txt", "second", 0o640),
      { seq: 4, op: "symlink", path: "d/link", target: "a.txt", mtimeNs: "11" },
    ]);
    expect(applied).toEqual([1, 2, 3, 4]);
    expect(await text("docs", "d/a.txt")).toBe("second");
    expect(decodeMeta((await store.get(dataKey("docs", "d/a.txt")))?.meta)).toMatchObject({ kind: "file", mode: 0o640 });
    // The folder's write waits (folder-writes.ts); the bucket tells it to every reader of the live mirror.
    expect((await pendingFolderWrites(store, "docs")).get("d")).toEqual({ mode: 0o750, mtimeNs: "10" });
    expect(decodeMeta((await store.get(dataKey("docs", "d/link")))?.meta)).toMatchObject({ kind: "symlink", linkTarget: "a.txt" });
    expect(await applier.readStatus("docs")).toMatchObject({ lastSeq: 4, state: "in-sync", appliedRecords: 4 });
  });

  it("writes puts of different files at once, and keeps the order of what depends on order", async () => {
    /** A store whose writes take a moment, counting how many overlap. */
    class SlowStore extends MemoryStore {
      writing = 0;
      mostAtOnce = 0;
      override async put(key: string, body: Uint8Array, meta?: Record<string, string>) {
        if (!key.startsWith("data/")) return super.put(key, body, meta);
        this.writing += 1;
        this.mostAtOnce = Math.max(this.mostAtOnce, this.writing);
        await new Promise((resolve) => setTimeout(resolve, 5));
        this.writing -= 1;
        return super.put(key, body, meta);
      }
    }
    const slow = new SlowStore();
    const order: number[] = [];
    const a = new Applier({ store: slow, observer: { applied: (_set, record) => order.push(record.seq) }, log: () => {} });
    const records: WireRecord[] = [
      ...Array.from({ length: 20 }, (_, i) => putRecord(i + 1, `f${i}.txt`, `first ${i}`)),
      putRecord(21, "f0.txt", "second"),
      { seq: 22, op: "rename", from: "f1.txt", to: "moved.txt" },
      putRecord(23, "f1.txt", "again"),
      { seq: 24, op: "delete", path: "f2.txt" },
    ];
    expect(await a.applyMessage(signedIncoming("m", "docs", messageBody("docs", records)))).toMatchObject({ kind: "applied", last: 24 });
    expect(slow.mostAtOnce).toBeGreaterThan(1);
    expect(order).toEqual(records.map((r) => r.seq));
    expect((await slow.get(dataKey("docs", "f0.txt")))?.body.toString()).toBe("second");
    expect((await slow.get(dataKey("docs", "moved.txt")))?.body.toString()).toBe("first 1");
    expect((await slow.get(dataKey("docs", "f1.txt")))?.body.toString()).toBe("again");
    expect(await slow.head(dataKey("docs", "f2.txt"))).toBeUndefined();
  });

  it("ignores a redelivered message and the already-applied head of an overlapping one", async () => {
    await deliver("docs", [putRecord(1, "a", "v1"), putRecord(2, "a", "v2")]);
    expect(await deliver("docs", [putRecord(1, "a", "v1"), putRecord(2, "a", "v2")])).toEqual({ kind: "duplicate", set: "docs" });
    await deliver("docs", [putRecord(1, "a", "v1"), putRecord(2, "a", "v2"), putRecord(3, "a", "v3")]);
    expect(applied).toEqual([1, 2, 3]);
    expect(await text("docs", "a")).toBe("v3");
  });

  it("marks the set out of sync at a gap and applies nothing after it", async () => {
    await deliver("docs", [putRecord(1, "a", "v1")]);
    const outcome = await deliver("docs", [putRecord(5, "a", "v5")]);
    expect(outcome).toEqual({ kind: "gap", set: "docs", expected: 2, got: 5 });
    const status = await applier.readStatus("docs");
    expect(status).toMatchObject({ state: "out-of-sync", lastSeq: 1 });
    expect(status.reason).toBe("seq gap: expected 2, got 5; set marked out of sync");
    // Even the missing seq arriving late does not paper over the gap.
    expect(await deliver("docs", [putRecord(2, "a", "v2")])).toEqual({ kind: "held", set: "docs" });
    expect(await text("docs", "a")).toBe("v1");
    expect(applied).toEqual([1]);
  });

  it("recovers from out of sync at a resync record", async () => {
    await deliver("docs", [putRecord(1, "a", "v1")]);
    await deliver("docs", [putRecord(3, "a", "v3")]);
    await deliver("docs", [putRecord(4, "b", "skipped"), { seq: 5, op: "resync", reason: "gap" }, putRecord(6, "a", "v6")]);
    expect(await applier.readStatus("docs")).toMatchObject({ state: "in-sync", lastSeq: 6 });
    expect(await text("docs", "a")).toBe("v6");
    expect(await text("docs", "b")).toBeUndefined();
  });

  it("rejects a bad message without writing anything, and says why in the status", async () => {
    await deliver("docs", [putRecord(1, "ok", "fine")]);
    const before = new Map(store.objects);
    const hostile = messageBody("docs", [putRecord(2, "x", "y")]).replace('"path":"x"', '"path":"../../../etc/passwd"');
    const outcome = await applier.applyMessage(signedIncoming("evil", "docs", hostile));
    expect(outcome.kind).toBe("rejected");
    const status = await applier.readStatus("docs");
    expect(status.lastRejected).toMatchObject({ messageId: "evil" });
    expect(status.lastRejected?.error).toMatch(/records\.0\.path: path has a '\.\.' segment/);
    for (const [key, object] of store.objects) {
      if (key !== statusKey("docs")) expect(before.get(key)).toBe(object);
    }
    expect([...store.objects.keys()].some((k) => k.includes("passwd"))).toBe(false);
    expect(JSON.parse(rejections[0] ?? "{}")).toMatchObject({ level: "error", msg: "message rejected", messageId: "evil", set: "docs" });
  });

  it("rejects content that does not match its hash, writing none of the message", async () => {
    const good = putRecord(1, "good", "fine");
    const bad = { ...putRecord(2, "bad", "evil"), sha256: "0".repeat(64) };
    const outcome = await deliver("docs", [good, bad]);
    expect(outcome.kind).toBe("rejected");
    expect(await text("docs", "good")).toBeUndefined();
    expect((await applier.readStatus("docs")).lastSeq).toBe(0);
  });

  it("rejects a message whose body names another set than its message group", async () => {
    const outcome = await deliver("other", [putRecord(1, "a", "x")], "docs");
    expect(outcome).toMatchObject({ kind: "rejected", set: "docs" });
    expect(await store.get(dataKey("other", "a"))).toBeUndefined();
  });

  it("rejects garbage from a group that is not a set name without writing at all", async () => {
    const outcome = await applier.applyMessage({ messageId: "x", groupId: "../../x", body: "garbage" });
    expect(outcome).toMatchObject({ kind: "rejected", set: undefined });
    expect(store.objects.size).toBe(0);
  });

  it("copies staged content into place and deletes the staging object once checkpointed", async () => {
    const record = putRecord(1, "big.bin", "pretend this is large");
    if (record.op !== "put") throw new Error("unreachable");
    const key = stagingKey("docs", 1, record.sha256);
    await store.put(key, Buffer.from("pretend this is large"));
    await deliver("docs", [{ ...record, content: { kind: "staged" } }]);
    expect(await text("docs", "big.bin")).toBe("pretend this is large");
    expect(await store.get(key)).toBeUndefined();
  });

  it("rejects a staged put whose staging object is missing", async () => {
    const record = putRecord(1, "big.bin", "x");
    if (record.op !== "put") throw new Error("unreachable");
    const outcome = await deliver("docs", [{ ...record, content: { kind: "staged" } }]);
    expect(outcome).toMatchObject({ kind: "rejected" });
    expect((outcome as { error: string }).error).toMatch(/staged content of big.bin \(seq 1\) is missing/);
  });

  it("deletes files and directory markers, and renames files", async () => {
    await deliver("docs", [
      { seq: 1, op: "mkdir", path: "d", mode: 0o755, mtimeNs: "1" },
      putRecord(2, "d/f", "x"),
      putRecord(3, "g", "y"),
      { seq: 4, op: "delete", path: "d/f" },
      { seq: 5, op: "delete", path: "d" },
      { seq: 6, op: "rename", from: "g", to: "h" },
    ]);
    expect([...store.objects.keys()].filter((k) => k.startsWith("data/")).sort()).toEqual([dataKey("docs", "h")]);
    expect(await text("docs", "h")).toBe("y");
  });

  it("a rename whose source is missing puts the set out of sync, keeping what came before", async () => {
    const outcome = await deliver("docs", [putRecord(1, "a", "x"), { seq: 2, op: "rename", from: "nope", to: "b" }, putRecord(3, "c", "z")]);
    expect(outcome).toMatchObject({ kind: "gap" });
    expect(await applier.readStatus("docs")).toMatchObject({ state: "out-of-sync", lastSeq: 1 });
    expect(await text("docs", "a")).toBe("x");
    expect(await text("docs", "c")).toBeUndefined();
  });

  it("keeps sets independent", async () => {
    await deliver("a", [putRecord(1, "f", "a1")]);
    await deliver("b", [putRecord(3, "f", "b3")]);
    await deliver("a", [putRecord(2, "f", "a2")]);
    expect(await text("a", "f")).toBe("a2");
    expect((await applier.readStatus("b")).state).toBe("out-of-sync");
    expect((await applier.readStatus("a")).state).toBe("in-sync");
  });
});
