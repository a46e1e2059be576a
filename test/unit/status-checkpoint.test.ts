import { gzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { dataKey, decodeMeta, dirKey, PREFIX, SetStatusSchema, statusKey, type SetStatus } from "../../contract/layout.ts";
import { segmentKey, segmentsPrefix } from "../../contract/history.ts";
import { encodeInline, type WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { FOLDER_WRITE_INTERVAL_MS, pendingFolderWrites, replayFolderWrites, supersededFolderWrites } from "../../lambdas/applier/folder-writes.ts";
import { readSegment } from "../../lambdas/history/history-store.ts";
import { STATUS_MAX_DEFERRED_MESSAGES, STATUS_WRITE_INTERVAL_MS } from "../../lambdas/applier/status-schedule.ts";
import { listSnapshots, readManifest } from "../../lambdas/tasks/snapshots.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { waitForTask } from "../../agent/task-results.ts";
import { TargetMismatchError } from "../../agent/target-wait.ts";
import { findProblems } from "../../agent/set-health.ts";
import { generateSigningKey } from "../../contract/signing.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";

const SET = "docs";
const START = Date.parse("2026-01-01T00:00:00Z");

/** The status object as stored, without the segments after it. */
async function storedStatus(store: MemoryStore): Promise<SetStatus> {
  return SetStatusSchema.parse(JSON.parse((await store.get(statusKey(SET)))?.body.toString() ?? "{}"));
}

/** Every object under prefix: key -> body and metadata. */
function objectsUnder(store: MemoryStore, prefix: string): Map<string, { body: string; meta: Record<string, string> }> {
  return new Map([...store.objects].filter(([key]) => key.startsWith(prefix)).map(([key, object]) => [key, { body: object.body.toString("base64"), meta: object.meta }]));
}

describe("the set's status checkpoint", () => {
  const clock = () => {
    const c = { t: START, now: () => new Date(c.t) };
    return c;
  };
  let n = 0;
  const deliver = (applier: Applier, records: WireRecord[]) => applier.applyMessage(signedIncoming(`m${++n}`, SET, messageBody(SET, records)));

  it("is written at most every STATUS_WRITE_INTERVAL_MS while only progress moves; readers, task --wait and another applier take the rest from the segments", async () => {
    const store = new MemoryStore();
    const c = clock();
    const applier = new Applier({ store, now: c.now, log: () => {} });
    await deliver(applier, [{ seq: 1, op: "mkdir", path: "d", mode: 0o755, mtimeNs: "1" }, putRecord(2, "d/a.txt", "a")]);
    expect((await storedStatus(store)).lastSeq).toBe(2);

    c.t += 300;
    expect(await deliver(applier, [putRecord(3, "d/b.txt", "b"), { seq: 4, op: "mkdir", path: "d", mode: 0o755, mtimeNs: "2" }])).toMatchObject({ kind: "applied", last: 4 });
    c.t += 300;
    await deliver(applier, [putRecord(5, "d/c.txt", "c")]);
    // The status object waits; the segments hold the checkpoint, and every reader folds them in.
    expect((await storedStatus(store)).lastSeq).toBe(2);
    expect(await readSetStatus(store, SET)).toMatchObject({ lastSeq: 5, appliedRecords: 5, state: "in-sync" });
    // task --wait on a record the target passed ends at once, no further message needed (a stale status would leave it waiting).
    await expect(waitForTask(store, SET, "never-written", { seq: 4, timeoutMs: 3_000, pollMs: 10 })).rejects.toThrow(TargetMismatchError);

    // Another applier (a fresh Lambda container) continues without seeing a gap, and writes the status at once.
    const other = new Applier({ store, now: c.now, log: () => {} });
    expect(await deliver(other, [putRecord(6, "d/e.txt", "e")])).toMatchObject({ kind: "applied", first: 6, last: 6 });
    expect((await storedStatus(store)).lastSeq).toBe(6);
    // A redelivered message is a duplicate there too.
    expect(await deliver(other, [putRecord(5, "d/c.txt", "c")])).toEqual({ kind: "duplicate", set: SET });

    // The first applier sees that another one wrote the status since its own write, and reads on from there.
    c.t += 100;
    expect(await deliver(applier, [putRecord(7, "d/f.txt", "f")])).toMatchObject({ kind: "applied", first: 7, last: 7 });
    expect((await storedStatus(store)).lastSeq).toBe(6);
    c.t += STATUS_WRITE_INTERVAL_MS;
    await deliver(applier, [putRecord(8, "d/g.txt", "g")]);
    expect(await storedStatus(store)).toMatchObject({ lastSeq: 8, appliedRecords: 8 });
  });

  it("writes a trickle's status (a message every 2 s, as the agent's linger packs it) one message in five", async () => {
    const store = new MemoryStore();
    const c = clock();
    const applier = new Applier({ store, now: c.now, log: () => {} });
    const written: number[] = [];
    for (let seq = 1; seq <= 11; seq++) {
      await deliver(applier, [putRecord(seq, `f${seq}.txt`, "x")]);
      if ((await storedStatus(store)).lastSeq === seq) written.push(seq);
      c.t += 2_000;
    }
    expect(written).toEqual([1, 6, 11]);
  });

  it("waits at most STATUS_MAX_DEFERRED_MESSAGES messages in a row, so a reader folds few segments under a stream", async () => {
    const store = new MemoryStore();
    const c = clock();
    const applier = new Applier({ store, now: c.now, log: () => {} });
    await deliver(applier, [putRecord(1, "a.txt", "a")]);
    let seq = 1;
    for (let i = 0; i < STATUS_MAX_DEFERRED_MESSAGES; i++) {
      c.t += 10;
      await deliver(applier, [putRecord(++seq, `f${seq}.txt`, "x")]);
    }
    expect((await storedStatus(store)).lastSeq).toBe(1);
    c.t += 10;
    await deliver(applier, [putRecord(++seq, `f${seq}.txt`, "x")]);
    expect((await storedStatus(store)).lastSeq).toBe(seq);
  });

  it("reads one segment key past what it knows per message, and still finds a segment its own dead invocation left", async () => {
    class CountingStore extends MemoryStore {
      heads: string[] = [];
      failNextSegment = false;
      override async head(key: string) {
        this.heads.push(key);
        return super.head(key);
      }
      override async put(key: string, body: Uint8Array, meta?: Record<string, string>) {
        const written = await super.put(key, body, meta);
        // Dies right after the segment reached the store, before the message returns.
        if (this.failNextSegment && key.startsWith(segmentsPrefix(SET))) {
          this.failNextSegment = false;
          throw new Error("injected crash after the segment");
        }
        return written;
      }
    }
    const store = new CountingStore();
    const c = clock();
    const applier = new Applier({ store, now: c.now, log: () => {} });
    await deliver(applier, [putRecord(1, "a.txt", "a")]);
    for (let seq = 2; seq <= 5; seq++) {
      c.t += 100;
      store.heads = [];
      await deliver(applier, [putRecord(seq, `f${seq}.txt`, "x")]);
      // Its own deferred segments are not read again: one HEAD of the next segment key (and the put path's, for the history).
      expect(store.heads.filter((key) => key.startsWith(segmentsPrefix(SET)))).toHaveLength(1);
    }
    expect((await storedStatus(store)).lastSeq).toBe(1);
    store.failNextSegment = true;
    const body = messageBody(SET, [putRecord(6, "g.txt", "g")]);
    await expect(applier.applyMessage(signedIncoming("m-dies", SET, body))).rejects.toThrow(/injected crash/);
    expect(await applier.applyMessage(signedIncoming("m-dies", SET, body))).toEqual({ kind: "duplicate", set: SET });
    expect(await deliver(applier, [putRecord(7, "h.txt", "h")])).toMatchObject({ kind: "applied", first: 7 });
  });

  it("is written at once when more than progress changes, and after every message without history", async () => {
    const store = new MemoryStore();
    const c = clock();
    const applier = new Applier({ store, now: c.now, log: () => {} });
    await deliver(applier, [putRecord(1, "a.txt", "a")]);
    // A gap is a change of state: written at once, whatever the time.
    expect(await deliver(applier, [putRecord(3, "c.txt", "c")])).toMatchObject({ kind: "gap" });
    expect(await storedStatus(store)).toMatchObject({ lastSeq: 1, state: "out-of-sync" });
    // So is the resync that ends it.
    expect(await deliver(applier, [{ seq: 4, op: "resync", reason: "test" }, putRecord(5, "a.txt", "a")])).toMatchObject({ kind: "applied", last: 5 });
    expect(await storedStatus(store)).toMatchObject({ lastSeq: 5, state: "in-sync" });

    const off = new MemoryStore();
    const noHistory = new Applier({ store: off, now: c.now, log: () => {}, history: { days: 0 } });
    for (let seq = 1; seq <= 3; seq++) {
      await deliver(noHistory, [putRecord(seq, `f${seq}.txt`, "x")]);
      // Without segments the status object is the only checkpoint: every message writes it.
      expect(SetStatusSchema.parse(JSON.parse((await off.get(statusKey(SET)))?.body.toString() ?? "{}")).lastSeq).toBe(seq);
    }
  });

  const MESSAGE_1: WireRecord[] = [
    { seq: 1, op: "mkdir", path: "d", mode: 0o755, mtimeNs: "100" },
    putRecord(2, "d/a.txt", "one"),
    putRecord(3, "d/b.txt", "two"),
    { seq: 4, op: "symlink", path: "d/link", target: "a.txt", mtimeNs: "101" },
    putRecord(5, "gone.txt", "soon deleted"),
  ];
  const MESSAGE_2: WireRecord[] = [
    putRecord(6, "d/a.txt", "three"),
    { seq: 7, op: "rename", from: "d/b.txt", to: "d/c.txt" },
    { seq: 8, op: "delete", path: "gone.txt" },
    { seq: 9, op: "mkdir", path: "e", mode: 0o700, mtimeNs: "102" },
    { seq: 10, op: "task", id: "t-crash", action: "snapshot", timeoutSeconds: 60 },
    putRecord(11, "e/x.txt", "x"),
    { seq: 12, op: "mkdir", path: "e", mode: 0o700, mtimeNs: "103" },
    { seq: 13, op: "symlink", path: "e/s", target: "x.txt", mtimeNs: "104" },
    { seq: 14, op: "rename", from: "d/c.txt", to: "e/c.txt" },
    { seq: 15, op: "delete", path: "d/link" },
    { seq: 16, op: "mkdir", path: "d", mode: 0o750, mtimeNs: "105" },
    // The renamed file's old name is taken again: a rename applied twice must not move this one.
    putRecord(17, "d/c.txt", "new c"),
  ];

  /**
   * A store that dies once where told: at the first write to the history or
   * the status once armed (after every object of the message, before its
   * checkpoint), or in the middle of a rename (its copy made, its source not
   * yet removed).
   */
  class CrashingStore extends MemoryStore {
    armed = false;
    crashed = 0;
    readonly at: "checkpoint" | "rename" | "none";
    constructor(at: "checkpoint" | "rename" | "none") {
      super();
      this.at = at;
    }
    #crash(key: string): never {
      this.armed = false;
      this.crashed += 1;
      throw new Error(`injected crash before writing ${key}`);
    }
    override async put(key: string, body: Uint8Array, meta?: Record<string, string>) {
      if (this.at === "checkpoint" && this.armed && (key.startsWith(PREFIX.history) || key.startsWith(PREFIX.state))) this.#crash(key);
      return super.put(key, body, meta);
    }
    override async delete(key: string) {
      if (this.at === "rename" && this.crashed === 0 && key === dataKey(SET, "d/c.txt")) this.#crash(key);
      return super.delete(key);
    }
  }

  for (const [days, at] of [
    [7, "checkpoint"],
    [0, "checkpoint"],
    [7, "rename"],
    [0, "rename"],
  ] as const) {
    it(`a crash ${at === "checkpoint" ? "between applying a message and checkpointing it" : "inside a rename"} re-applies safely on redelivery, byte for byte (history ${days > 0 ? "on" : "off"})`, async () => {
      const run = async (crash: "checkpoint" | "rename" | "none") => {
        const store = new CrashingStore(crash);
        const c = clock();
        const last = MESSAGE_2.at(-1)?.seq;
        const make = () => new Applier({ store, now: c.now, log: () => {}, history: { days }, observer: { applied: (_set, record) => (store.armed = store.crashed === 0 && record.seq === last) } });
        await deliver(make(), MESSAGE_1);
        c.t += 200;
        const body = messageBody(SET, MESSAGE_2);
        if (crash !== "none") {
          await expect(make().applyMessage(signedIncoming("m-crash", SET, body))).rejects.toThrow(/injected crash/);
          expect(store.crashed).toBe(1);
          // The checkpoint stands where the message last moved it: before the marker, and before a record that
          // touches a renamed path (the rename at 14 moves d/c.txt, which the rename at 7 made; the put at 17 takes
          // d/c.txt again; reapply.ts). A redelivery applies what follows again.
          expect((await readSetStatus(store, SET)).lastSeq).toBe(at === "checkpoint" ? 16 : 13);
        }
        // The redelivery (to another container), then the same message once more.
        const redelivered = await make().applyMessage(signedIncoming("m-crash", SET, body));
        expect(redelivered, JSON.stringify([redelivered, await readSetStatus(store, SET)])).toMatchObject({ kind: "applied", last: 17 });
        expect(await make().applyMessage(signedIncoming("m-crash", SET, body))).toEqual({ kind: "duplicate", set: SET });
        // With history, folder writes wait: a later (cold) invocation finds them in the segments and writes them.
        c.t += FOLDER_WRITE_INTERVAL_MS;
        await deliver(make(), [putRecord(18, "later.txt", "later")]);
        expect(await pendingFolderWrites(store, SET)).toEqual(new Map());
        return store;
      };
      const clean = await run("none");
      const crashed = await run(at);
      expect(objectsUnder(crashed, PREFIX.data)).toEqual(objectsUnder(clean, PREFIX.data));
      expect(objectsUnder(crashed, segmentsPrefix(SET))).toEqual(objectsUnder(clean, segmentsPrefix(SET)));
      expect(objectsUnder(crashed, `${PREFIX.snapshots}${SET}/`)).toEqual(objectsUnder(clean, `${PREFIX.snapshots}${SET}/`));
      const status = await readSetStatus(crashed, SET);
      expect(status).toMatchObject({ lastSeq: 18, state: "in-sync", appliedRecords: (await readSetStatus(clean, SET)).appliedRecords });
      expect((await crashed.get(dataKey(SET, "d/a.txt")))?.body.toString()).toBe("three");
      expect((await crashed.get(dataKey(SET, "e/c.txt")))?.body.toString()).toBe("two");
      expect((await crashed.get(dataKey(SET, "d/c.txt")))?.body.toString()).toBe("new c");
      expect(await crashed.head(dataKey(SET, "d/link"))).toBeUndefined();
      expect(await crashed.head(dataKey(SET, "gone.txt"))).toBeUndefined();
      expect(decodeMeta((await crashed.head(dirKey(SET, "d")))?.meta)).toMatchObject({ kind: "dir", mode: 0o750, mtimeNs: "105" });
      expect(decodeMeta((await crashed.head(dirKey(SET, "e")))?.meta)).toMatchObject({ kind: "dir", mode: 0o700, mtimeNs: "103" });
    });
  }
});

describe("folder writes", () => {
  it("writes a folder once per run of its changes, and keeps every one in the history", async () => {
    class CountingStore extends MemoryStore {
      folderWrites: string[] = [];
      override async put(key: string, body: Uint8Array, meta?: Record<string, string>) {
        if (key === dirKey(SET, "d")) this.folderWrites.push(decodeMeta(meta)?.mtimeNs ?? "?");
        return super.put(key, body, meta);
      }
    }
    const store = new CountingStore();
    const applier = new Applier({ store, log: () => {} });
    const mkdir = (seq: number, mtimeNs: string): WireRecord => ({ seq, op: "mkdir", path: "d", mode: 0o755, mtimeNs });
    await applier.applyMessage(
      signedIncoming(
        "m1",
        SET,
        messageBody(SET, [mkdir(1, "10"), putRecord(2, "d/a.txt", "a"), mkdir(3, "11"), putRecord(4, "d/b.txt", "b"), mkdir(5, "12"), { seq: 6, op: "delete", path: "d/a.txt" }, mkdir(7, "13")]),
      ),
    );
    // The delete could see the folder: the write before it goes first; the ones a later write replaces never go, the last waits.
    expect(store.folderWrites).toEqual(["12"]);
    expect((await pendingFolderWrites(store, SET)).get("d")).toEqual({ mode: 0o755, mtimeNs: "13" });
    const segment = await readSegment(store, SET, ((await readSetStatus(store, SET)).history?.segment ?? 0) - 1);
    expect(segment.filter((e) => e.op === "mkdir").map((e) => ("mtimeNs" in e ? e.mtimeNs : ""))).toEqual(["10", "11", "12", "13"]);
  });

  it("leaves a folder write to a later one only across records that cannot see the folder or stop the message", () => {
    const mkdir = (seq: number, path = "d"): WireRecord => ({ seq, op: "mkdir", path, mode: 0o755, mtimeNs: String(seq) });
    const whole = putRecord(3, "d/big", "x");
    const delta: WireRecord = whole.op === "put" ? { ...whole, delta: { base: "0".repeat(64), blocks: [] }, content: encodeInline(Buffer.alloc(0)) } : whole;
    expect([...supersededFolderWrites([mkdir(1), putRecord(2, "d/a", "a"), mkdir(3, "e"), { seq: 4, op: "symlink", path: "d/s", target: "a", mtimeNs: "4" }, mkdir(5)])]).toEqual([1]);
    expect([...supersededFolderWrites([mkdir(1), delta, mkdir(4)])]).toEqual([]);
    expect([...supersededFolderWrites([mkdir(1), { seq: 2, op: "task", id: "t", action: "snapshot", timeoutSeconds: 0 }, mkdir(3)])]).toEqual([]);
    expect([...supersededFolderWrites([mkdir(1), { seq: 2, op: "rename", from: "x", to: "y" }, mkdir(3)])]).toEqual([]);
  });
});

describe("folder writes left for later (history on)", () => {
  const START_MS = START;
  class FolderCountingStore extends MemoryStore {
    folderPuts: string[] = [];
    segmentGets = 0;
    override async put(key: string, body: Uint8Array, meta?: Record<string, string>) {
      if (key.startsWith(`${PREFIX.data}${SET}/`) && key.endsWith("/")) this.folderPuts.push(`${key.slice(`${PREFIX.data}${SET}/`.length)}@${decodeMeta(meta)?.mtimeNs ?? "?"}`);
      return super.put(key, body, meta);
    }
    override async get(key: string) {
      if (key.startsWith(segmentsPrefix(SET))) this.segmentGets += 1;
      return super.get(key);
    }
  }
  const mkdir = (seq: number, path: string, mtimeNs: string): WireRecord => ({ seq, op: "mkdir", path, mode: 0o755, mtimeNs });
  /** Five messages of one new file each in folders d0..d4, every one changing its folder's mtime, 300 ms apart. */
  const trickle = async (applier: Applier, clock: { t: number }) => {
    await applier.applyMessage(signedIncoming("m0", SET, messageBody(SET, [0, 1, 2, 3, 4].map((i) => mkdir(i + 1, `d${i}`, "1")))));
    for (let i = 0; i < 5; i++) {
      clock.t += 300;
      const seq = 6 + 2 * i;
      await applier.applyMessage(signedIncoming(`m${seq}`, SET, messageBody(SET, [putRecord(seq, `d${i}/f.txt`, `file ${i}`), mkdir(seq + 1, `d${i}`, String(100 + i))])));
    }
  };

  it("costs a trickle of new files no folder PUT, and a marker's snapshot still sees every folder's exact mtime", async () => {
    const store = new FolderCountingStore();
    const clock = { t: START_MS };
    const applier = new Applier({ store, now: () => new Date(clock.t), log: () => {} });
    await trickle(applier, clock);
    expect(store.folderPuts).toEqual([]);
    expect(await storedStatus(store)).toMatchObject({ folderWritesFrom: 0 });
    expect((await pendingFolderWrites(store, SET)).get("d3")).toEqual({ mode: 0o755, mtimeNs: "103" });

    await applier.applyMessage(signedIncoming("m-marker", SET, messageBody(SET, [{ seq: 16, op: "task", id: "t-folders", action: "snapshot", timeoutSeconds: 60 }])));
    expect(store.folderPuts.sort()).toEqual(["d0/@100", "d1/@101", "d2/@102", "d3/@103", "d4/@104"]);
    const [summary] = await listSnapshots(store, SET);
    const manifest = summary ? await readManifest(store, summary) : [];
    expect(manifest.filter((e) => e.kind === "dir").map((e) => `${e.path}@${e.mtimeNs}`).sort()).toEqual(["d0@100", "d1@101", "d2@102", "d3@103", "d4@104"]);
    expect((await storedStatus(store)).folderWritesFrom).toBeUndefined();
  });

  it("writes them once the oldest waited FOLDER_WRITE_INTERVAL_MS, each folder once", async () => {
    const store = new FolderCountingStore();
    const clock = { t: START_MS };
    const applier = new Applier({ store, now: () => new Date(clock.t), log: () => {} });
    await trickle(applier, clock);
    clock.t = START_MS + FOLDER_WRITE_INTERVAL_MS;
    await applier.applyMessage(signedIncoming("m-late", SET, messageBody(SET, [putRecord(16, "late.txt", "late")])));
    expect(store.folderPuts.sort()).toEqual(["d0/@100", "d1/@101", "d2/@102", "d3/@103", "d4/@104"]);
    expect(await pendingFolderWrites(store, SET)).toEqual(new Map());
    expect((await storedStatus(store)).folderWritesFrom).toBeUndefined();
  });

  it("a cold invocation after a crash finds the folder writes in the segments and writes them, as the warm one would have", async () => {
    const run = async (crash: boolean) => {
      const store = new FolderCountingStore();
      const clock = { t: START_MS };
      const first = new Applier({ store, now: () => new Date(clock.t), log: () => {} });
      await trickle(first, clock);
      // A crash loses what the first applier kept in memory: a new one (a cold container) goes on.
      const next = crash ? new Applier({ store, now: () => new Date(clock.t), log: () => {} }) : first;
      clock.t += 300;
      store.segmentGets = 0;
      await next.applyMessage(signedIncoming("m-next", SET, messageBody(SET, [putRecord(16, "d0/g.txt", "g"), mkdir(17, "d0", "200")])));
      return store;
    };
    const crashed = await run(true);
    // Its folders went at the end of its first message: d0 with the mtime the last segment gave it.
    expect(crashed.folderPuts.sort()).toEqual(["d0/@200", "d1/@101", "d2/@102", "d3/@103", "d4/@104"]);
    expect(crashed.segmentGets).toBeGreaterThan(0);
    expect(await pendingFolderWrites(crashed, SET)).toEqual(new Map());
    // The warm applier writes the same objects once their time comes, byte for byte.
    const warm = await run(false);
    expect(warm.folderPuts).toEqual([]);
    expect(warm.segmentGets).toBe(0);
    await new Applier({ store: warm, now: () => new Date(START_MS + FOLDER_WRITE_INTERVAL_MS * 2), log: () => {} }).applyMessage(
      signedIncoming("m-flush", SET, messageBody(SET, [putRecord(18, "x.txt", "x")])),
    );
    const folders = (store: MemoryStore) => new Map([...objectsUnder(store, PREFIX.data)].filter(([key]) => key.endsWith("/")));
    expect(folders(crashed)).toEqual(folders(warm));
  });

  it("names in the status the history segments a cold invocation could not read for the folder writes left for later, until a resync", async () => {
    const store = new FolderCountingStore();
    const clock = { t: START_MS };
    const warm = new Applier({ store, now: () => new Date(clock.t), log: () => {} });
    await trickle(warm, clock);
    // The status is written again (its interval passed) while the folder writes still wait: they start at segment 0.
    clock.t += STATUS_WRITE_INTERVAL_MS;
    await warm.applyMessage(signedIncoming("m16", SET, messageBody(SET, [putRecord(16, "x.txt", "x")])));
    const before = await storedStatus(store);
    expect(before).toMatchObject({ lastSeq: 16, folderWritesFrom: 0 });
    expect(before.history?.segment).toBeGreaterThan(2);
    // Retention removed segment 2 (d1's mtime 101), and the warm applier is gone: a cold one replays the rest.
    await store.delete(segmentKey(SET, 2));
    clock.t += 300;
    const cold = new Applier({ store, now: () => new Date(clock.t), log: () => {} });
    expect(await cold.applyMessage(signedIncoming("m17", SET, messageBody(SET, [putRecord(17, "y.txt", "y")])))).toMatchObject({ kind: "applied", last: 17 });
    expect(store.folderPuts.sort()).toEqual(["d0/@100", "d1/@1", "d2/@102", "d3/@103", "d4/@104"]);
    expect((await storedStatus(store)).folderWritesLost).toEqual({ at: new Date(clock.t).toISOString(), first: 2, last: 2, unreadable: 1, error: expect.stringContaining("history segment 2") as string });
    const facts = { set: SET, counters: { nextSeq: 18, sentSeq: 17, backlogRecords: 0, backlogBytes: 0, messagesSent: 0, bytesSent: 0, lastSendError: null, overflowed: false, watcherProblem: null }, generation: undefined, now: new Date(clock.t) };
    const problems = findProblems({ ...facts, target: { status: await readSetStatus(store, SET) } });
    expect(problems).toEqual([{ kind: "folder-writes-lost", message: expect.stringMatching(/^history segment 2 could not be read .*`tidemark mirror docs --mode full` writes every folder again$/) as string }]);

    // A resync (and the full mirror behind it) writes every folder again: nothing is named lost any more.
    clock.t += 300;
    await cold.applyMessage(signedIncoming("m18", SET, messageBody(SET, [{ seq: 18, op: "resync", reason: "full mirror" }, { seq: 19, op: "mkdir", path: "d1", mode: 0o755, mtimeNs: "101" }])));
    expect((await storedStatus(store)).folderWritesLost).toBeUndefined();
    expect(findProblems({ ...facts, counters: { ...facts.counters, nextSeq: 20, sentSeq: 19 }, target: { status: await readSetStatus(store, SET) } })).toEqual([]);
  });

  it("replays past a damaged segment and names it, instead of failing every message of the set", async () => {
    const store = new FolderCountingStore();
    const clock = { t: START_MS };
    await trickle(new Applier({ store, now: () => new Date(clock.t), log: () => {} }), clock);
    const unreadable: string[] = [];
    const replay = () => replayFolderWrites(store, SET, 0, 6, (segment, error) => unreadable.push(`${segment}: ${error.name}`));
    await store.put(segmentKey(SET, 3), gzipSync("not json\n"), {});
    await store.put(segmentKey(SET, 4), gzipSync(`${JSON.stringify({ op: "mkdir", path: 7 })}\n`), {});
    await store.put(segmentKey(SET, 5), Buffer.from("not gzip"), {});
    const writes = await replay();
    expect(unreadable).toEqual(["3: HistoryError", "4: HistoryError", "5: HistoryError"]);
    expect(writes.get("d1")).toEqual({ mode: 0o755, mtimeNs: "101" });
    expect(writes.get("d2")).toEqual({ mode: 0o755, mtimeNs: "1" });
  });

  it("writes folders at once without history: no segment holds them", async () => {
    const store = new FolderCountingStore();
    const applier = new Applier({ store, log: () => {}, history: { days: 0 } });
    await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [mkdir(1, "d", "5")])));
    expect(store.folderPuts).toEqual(["d/@5"]);
  });
});

describe("when the target last applied anything", () => {
  it("moves with what is applied (folded from the segments when the status write waits), not with refusals or rejections", async () => {
    const store = new MemoryStore();
    const c = { t: START };
    const applier = new Applier({ store, now: () => new Date(c.t), log: () => {} });
    await applier.applyMessage(signedIncoming("a1", SET, messageBody(SET, [putRecord(1, "a.txt", "a")])));
    expect(await readSetStatus(store, SET)).toMatchObject({ lastSeq: 1, appliedAt: new Date(START).toISOString() });

    // A deferred status write: the reader takes the time from the segment.
    c.t += 300;
    await applier.applyMessage(signedIncoming("a2", SET, messageBody(SET, [putRecord(2, "b.txt", "b")])));
    expect((await storedStatus(store)).lastSeq).toBe(1);
    expect(await readSetStatus(store, SET)).toMatchObject({ lastSeq: 2, appliedAt: new Date(START + 300).toISOString() });

    // Refused (another key) and rejected (a bad message) later on: the status is written, nothing is applied.
    c.t += 60 * 60_000;
    expect(await applier.applyMessage(signedIncoming("rogue", SET, messageBody(SET, [putRecord(3, "c.txt", "c")]), generateSigningKey()))).toMatchObject({ kind: "rejected" });
    c.t += 60_000;
    expect(await applier.applyMessage(signedIncoming("bad", SET, "not a message"))).toMatchObject({ kind: "rejected" });
    const after = await readSetStatus(store, SET);
    expect(after).toMatchObject({ lastSeq: 2, appliedAt: new Date(START + 300).toISOString() });
    expect(Date.parse(after.updatedAt)).toBeGreaterThan(START + 60 * 60_000);
  });
});
