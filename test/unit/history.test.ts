// Point-in-time recovery through the whole pipeline on an in-memory target:
// a workload of dependent writes with no markers, the source's exact state
// recorded at each moment on a test clock, and `restore --at` compared with
// it; a ransomware pass followed by a source host trying to shorten history;
// retention past the window; volume sets; the timeline.

import { randomBytes } from "node:crypto";
import {
  appendFileSync,
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  symlinkSync,
  truncateSync,
  utimesSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { parseMoment, restoreAt, TimeSpecError } from "../../agent/restore-at.ts";
import { acceptRoot } from "../../agent/accept-root.ts";
import { runMirror, runPrune, runVerify } from "../../agent/operations.ts";
import { describePrune } from "../../agent/commands/snapshots.ts";
import { describeTimeline } from "../../agent/commands/timeline.ts";
import { UsageError } from "../../agent/commands/command.ts";
import { DAY_MS, historyPrefix, segmentsPrefix, checkpointsPrefix } from "../../contract/history.ts";
import { PREFIX } from "../../contract/layout.ts";
import { BLOCK_SIZE, type WireMessage } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { HistoryError } from "../../lambdas/history/history-store.ts";
import { readTimeline } from "../../lambdas/history/replay.ts";
import { historySettingsFromEnvironment } from "../../lambdas/history/settings.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import type { CopyOptions, WriteResult } from "../../lambdas/store/store.ts";
import { listSnapshots } from "../../lambdas/tasks/snapshots.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";
import { seededRandom } from "../support/seeded-random.ts";
import { pictureOfSource, tempDir, type TreePicture } from "../support/tree.ts";
import { VOLUME_SET, volumeHarness } from "../support/volume-harness.ts";
import { KillableStore } from "../support/killable-store.ts";

const SET = "docs";


/** A memory store that logs each request as "METHOD key". */
class RequestLog extends MemoryStore {
  readonly requests: string[] = [];
  override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
    this.requests.push(`PUT ${key}`);
    return super.put(key, body, meta);
  }
  override async copy(from: string, to: string, meta: Record<string, string>, options?: CopyOptions): Promise<WriteResult> {
    this.requests.push(`COPY ${to}`);
    return super.copy(from, to, meta, options);
  }
  override async head(key: string) {
    this.requests.push(`HEAD ${key}`);
    return super.head(key);
  }
  override async get(key: string, versionId?: string) {
    this.requests.push(`GET ${key}`);
    return super.get(key, versionId);
  }
  override async delete(key: string): Promise<void> {
    this.requests.push(`DELETE ${key}`);
    return super.delete(key);
  }
  clear(): void {
    this.requests.length = 0;
  }
}

/** A test clock: a day in the past (S3-like stamps of the memory store stay later than it), moved by hand. */
function testClock(): { now: () => number; advance(ms: number): number } {
  let now = Date.now() - DAY_MS;
  return {
    now: () => now,
    advance(ms) {
      now += ms;
      return now;
    },
  };
}

const picture = (root: string): Promise<TreePicture> => pictureOfSource(root, { microseconds: true });

let cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

function harness(store: MemoryStore, clock: ReturnType<typeof testClock>, history = { days: 7, checkpointEvery: 5 }): Harness {
  const h = agentHarness(SET, {}, { store, history, now: clock.now });
  cleanups.push(() => h.close());
  return h;
}

async function restoredPicture(store: MemoryStore, at: number): Promise<TreePicture> {
  const out = tempDir("tidemark-at-");
  try {
    await restoreAt(store, SET, at, join(out.path, "tree"));
    return await picture(join(out.path, "tree"));
  } finally {
    out.remove();
  }
}

/** One step of a workload with dependent writes: every kind of change a tree sees. */
function workloadStep(root: string, random: (n: number) => number, step: number): string {
  const dirs = ["", "a", "a/b", "c"].filter((d) => existsSync(join(root, d)));
  const files = dirs.flatMap((d) =>
    readdirSync(join(root, d), { withFileTypes: true })
      .filter((e) => e.isFile())
      .map((e) => (d ? `${d}/${e.name}` : e.name)),
  );
  const file = files[random(files.length)];
  const dir = dirs[random(dirs.length)] ?? "";
  const at = (name: string) => join(root, dir, name);
  switch (random(11)) {
    case 0:
    case 1: {
      // Dependent writes: the ledger records what the counter holds, then the counter moves on.
      const counter = join(root, "counter");
      const value = existsSync(counter) ? readFileSync(counter, "utf8") : "0";
      appendFileSync(join(root, "ledger"), `${step} ${value}\n`);
      writeFileSync(counter, String(Number(value) + 1));
      return "dependent write";
    }
    case 2:
      if (!file) break;
      appendFileSync(join(root, file), `appended at ${step}\n`);
      return `append ${file}`;
    case 3: {
      // Now and then large enough to travel staged.
      const bytes = random(6) === 0 ? randomBytes(300 * 1024) : Buffer.from(`written at ${step} `.repeat(1 + random(40)));
      writeFileSync(at(`f${random(12)}.txt`), bytes);
      return "write";
    }
    case 4:
      if (!file) break;
      truncateSync(join(root, file), random(20));
      return `truncate ${file}`;
    case 5:
      if (!file) break;
      // Sometimes onto an existing file.
      renameSync(join(root, file), files.length > 3 && random(3) === 0 ? join(root, files[random(files.length)] ?? file) : at(`r${step}.txt`));
      return `rename ${file}`;
    case 6:
      if (!file || files.length < 5) break;
      rmSync(join(root, file));
      return `delete ${file}`;
    case 7:
      if (!existsSync(join(root, "a/b"))) mkdirSync(join(root, "a/b"), { recursive: true });
      else if (random(2) === 0) mkdirSync(join(root, "c", `empty${step}`), { recursive: true });
      else if (existsSync(join(root, "c"))) rmSync(join(root, "c"), { recursive: true });
      return "folders";
    case 8:
      rmSync(at("link"), { force: true });
      symlinkSync(random(2) === 0 ? "../counter" : `target-${step}`, at("link"));
      return "symlink";
    case 9:
      if (!file) break;
      chmodSync(join(root, file), random(2) === 0 ? 0o600 : 0o644);
      return `chmod ${file}`;
    case 10:
      if (!file) break;
      utimesSync(join(root, file), 1_700_000_000 + step, 1_700_000_000 + step);
      return `touch ${file}`;
  }
  writeFileSync(join(root, `fallback-${step}`), String(step));
  return "fallback write";
}

describe("restore --at: any moment of the window", () => {
  it.each([
    ["an unversioned bucket (replaced content preserved)", false],
    ["a versioned bucket (replaced content read by the versions the history names)", true],
  ])("gives back the exact tree of random moments of a workload without markers, through kills of the applier mid-message, on %s", async (_what, versioned) => {
    const store = new KillableStore({ versioned });
    const clock = testClock();
    const h = harness(store, clock);
    const random = seededRandom(1313);
    const src = h.src.path;
    writeFileSync(join(src, "counter"), "0");
    mkdirSync(join(src, "a"));
    writeFileSync(join(src, "a/start.txt"), "the first file");
    const moments: { at: number; tree: TreePicture; what: string }[] = [];
    const start = clock.advance(1000);
    await h.agent.start();
    moments.push({ at: start, tree: await picture(src), what: "initial" });
    await h.agent.drain(SET);
    let marker = 0;
    for (let step = 1; step <= 60; step++) {
      const what = workloadStep(src, random, step);
      const at = clock.advance(1000);
      if (step === 30) {
        await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 60 } });
        marker = at;
      } else await h.agent.scan(SET);
      moments.push({ at, tree: await picture(src), what });
      // Messages that hold several steps, some of them cut short by a kill: the retry starts over.
      if (random(3) !== 0) continue;
      if (random(3) === 0) {
        store.failAfter = 1 + random(8);
        await h.agent.drain(SET).catch((error: unknown) => expect(String(error)).toContain("killed"));
        store.failAfter = undefined;
      }
      await h.agent.drain(SET);
    }
    await h.agent.drain(SET);
    expect(store.kills).toBeGreaterThan(0);
    expect(marker).toBeGreaterThan(0);
    // A versioned bucket keeps what was replaced as noncurrent versions: nothing is copied aside.
    const preserved = [...store.objects.keys()].filter((k) => k.startsWith(PREFIX.preserved));
    if (versioned) expect(preserved).toEqual([]);
    else expect(preserved.length).toBeGreaterThan(5);
    // Several checkpoints were written after the first: restores start from one of them.
    expect([...store.objects.keys()].filter((k) => k.startsWith(checkpointsPrefix(SET)) && k.endsWith(".json")).length).toBeGreaterThan(2);

    // Just before the first change the set was empty; before that there is no history.
    expect(await restoredPicture(store, start - 1)).toEqual({});
    await expect(restoreAt(store, SET, start - 2, join(h.state.path, "too-early"))).rejects.toThrow(HistoryError);
    // Every moment, and a moment between each and the next, restores to the source's exact state then.
    // Every rename, delete and truncation, and a random third of the rest.
    const sample = moments.filter((m, i) => i === 0 || i === moments.length - 1 || /^(rename|delete|truncate)/.test(m.what) || random(3) === 0);
    expect(sample.filter((m) => /^(rename|delete|truncate)/.test(m.what)).length).toBeGreaterThan(5);
    for (const moment of sample) {
      expect(await restoredPicture(store, moment.at), `at step "${moment.what}"`).toEqual(moment.tree);
      expect(await restoredPicture(store, moment.at + 999), `just before the step after "${moment.what}"`).toEqual(moment.tree);
    }
    // Before the first snapshot, and right at it.
    const beforeMarker = moments.filter((m) => m.at < marker).at(-1);
    expect(beforeMarker).toBeDefined();
    expect(await restoredPicture(store, beforeMarker?.at ?? 0)).toEqual(beforeMarker?.tree);
    expect(await restoredPicture(store, marker)).toEqual(moments.find((m) => m.at === marker)?.tree);
  });

  it.each([
    ["an unversioned bucket", false],
    ["a versioned bucket", true],
  ])("gives back the tree from before a ransomware pass, even after the source host pruned every snapshot, repaired with orphans deleted and mirrored (%s)", async (_name, versioned) => {
    const store = new MemoryStore({ versioned });
    const clock = testClock();
    const h = harness(store, clock);
    const src = h.src.path;
    for (let i = 0; i < 12; i++) writeFileSync(join(src, `doc${i}.txt`), `document ${i} `.repeat(50 + i));
    mkdirSync(join(src, "empty"));
    symlinkSync("doc1.txt", join(src, "latest"));
    clock.advance(1000);
    await h.agent.start();
    await h.agent.drain(SET);
    clock.advance(1000);
    await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 60 } });
    await h.agent.drain(SET);
    const before = clock.advance(60_000);
    const good = await picture(src);

    // The pass: every file overwritten, some deleted.
    clock.advance(1000);
    for (let i = 0; i < 12; i++) {
      if (i % 4 === 0) rmSync(join(src, `doc${i}.txt`));
      else writeFileSync(join(src, `doc${i}.txt`), randomBytes(200));
    }
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    // Then the compromised host tries to take the history with it.
    clock.advance(1000);
    const pruned = await runPrune(h.operations(), SET, 0);
    expect(pruned.deleted).toEqual([]);
    expect(pruned.protected).toHaveLength(1);
    expect(describePrune(SET, pruned)).toContain("inside its 7-day protection window");
    expect(await listSnapshots(store, SET)).toHaveLength(1);
    rmSync(src, { recursive: true, force: true });
    mkdirSync(src);
    // The agent holds a set whose root was swapped for an empty folder; the compromised host accepts it, as it may.
    await acceptRoot(h.journal, { name: SET, root: src, exclude: [] });
    clock.advance(1000);
    await runVerify(h.operations(), SET, { deep: false, repair: true, orphans: "delete" });
    clock.advance(1000);
    await runMirror(h.operations(), SET, "full", "delete");
    await h.agent.drain(SET);
    expect([...store.objects.keys()].filter((k) => k.startsWith(`${PREFIX.data}${SET}/`))).toEqual([]);

    expect(await restoredPicture(store, before)).toEqual(good);
    // A moment after it is the wreck: the history is honest both ways.
    expect(await restoredPicture(store, clock.now())).toEqual({});
  });
});

describe("what a source host can send cannot shorten history", () => {
  it("a forged prune with keep 0 and a verify that deletes every orphan leave every moment restorable", async () => {
    const store = new MemoryStore();
    const clock = testClock();
    const applier = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history: { days: 7 } });
    const send = (records: WireMessage["records"]) => applier.applyMessage(signedIncoming(`m${records[0]?.seq ?? 0}`, SET, messageBody(SET, records)));
    const t1 = clock.advance(1000);
    await send([{ ...putRecord(1, "a.txt", "first"), at: t1 }]);
    const t2 = clock.advance(1000);
    await send([{ ...putRecord(2, "a.txt", "second"), at: t2 }]);
    clock.advance(1000);
    await send([{ seq: 3, op: "prune", id: "forged", keep: 0 }]);
    const { gzipSync } = await import("node:zlib");
    const manifest = gzipSync("");
    const { createHash } = await import("node:crypto");
    await send([
      {
        seq: 4,
        op: "verify",
        id: "forged",
        deep: false,
        orphans: "delete",
        size: manifest.length,
        sha256: createHash("sha256").update(manifest).digest("hex"),
        content: { kind: "inline", encoding: "base64", data: manifest.toString("base64") },
      },
    ]);
    expect(store.objects.has(`${PREFIX.data}${SET}/a.txt`)).toBe(false);
    const at = async (moment: number) => {
      const out = tempDir("tidemark-at-");
      try {
        await restoreAt(store, SET, moment, out.path, { force: true });
        return readFileSync(join(out.path, "a.txt"), "utf8");
      } finally {
        out.remove();
      }
    };
    expect(await at(t1)).toBe("first");
    expect(await at(t2)).toBe("second");
    // The deletion is in the history too: the moment after it has no a.txt.
    expect((await readTimeline(store, SET)).changes).toBe(3);
  });

  it("prune deletes a snapshot older than the window, never one inside it", async () => {
    const store = new MemoryStore();
    const clock = testClock();
    const applier = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history: { days: 7 } });
    const send = (records: WireMessage["records"]) => applier.applyMessage(signedIncoming(`m${records[0]?.seq ?? 0}`, SET, messageBody(SET, records)));
    clock.advance(1000);
    await send([putRecord(1, "a.txt", "old"), { seq: 2, op: "task", id: "old-one", action: "snapshot", timeoutSeconds: 60 }]);
    clock.advance(8 * DAY_MS);
    await send([putRecord(3, "a.txt", "new"), { seq: 4, op: "task", id: "new-one", action: "snapshot", timeoutSeconds: 60 }]);
    await send([{ seq: 5, op: "prune", id: "keep-none", keep: 0 }]);
    expect((await listSnapshots(store, SET)).map((s) => s.taskId)).toEqual(["new-one"]);
    const report = JSON.parse((await store.get(`${PREFIX.state}${SET}/prune/keep-none.json`))?.body.toString() ?? "{}");
    expect(report).toMatchObject({ deleted: ["snap-old-one"], protected: ["snap-new-one"], windowDays: 7 });
    expect(describePrune(SET, report)).toContain("the target kept 1 more (snap-new-one): taken inside its 7-day protection window");
  });

  it.each([
    ["an unversioned bucket", false],
    ["a versioned bucket (the bucket's lifecycle expires replaced versions; retention copies and deletes none)", true],
  ])("retention past the window is the applier's: old history and content no moment needs go, the window stays whole (%s)", async (_what, versioned) => {
    const store = new RequestLog({ versioned });
    const clock = testClock();
    const applier = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history: { days: 1, checkpointEvery: 2, retentionEveryMs: 0 } });
    let seq = 0;
    const put = async (path: string, text: string) => {
      seq += 1;
      const at = clock.advance(3_600_000);
      await applier.applyMessage(signedIncoming(`m${seq}`, SET, messageBody(SET, [{ ...putRecord(seq, path, text), at }])));
      return at;
    };
    const moments: { at: number; text: string }[] = [];
    for (let i = 0; i < 60; i++) moments.push({ at: await put("a.txt", `version ${i}`), text: `version ${i}` });
    const now = clock.now();
    const inWindow = moments.filter((m) => m.at >= now - DAY_MS);
    const preserved = [...store.objects.keys()].filter((k) => k.startsWith(`${PREFIX.preserved}${SET}/`));
    if (versioned) {
      expect(preserved).toEqual([]);
      expect(store.requests.filter((r) => r.startsWith("COPY ") || r.startsWith(`DELETE ${PREFIX.data}`))).toEqual([]);
    } else {
      // 60 versions over 60 hours: only what the last day (and the checkpoint before it) needs is kept.
      expect(preserved.length).toBeLessThan(30);
      expect(preserved.length).toBeGreaterThanOrEqual(inWindow.length - 1);
    }
    const segments = [...store.objects.keys()].filter((k) => k.startsWith(segmentsPrefix(SET)));
    expect(segments.length).toBeLessThan(30);
    for (const moment of inWindow) {
      const out = tempDir("tidemark-at-");
      try {
        await restoreAt(store, SET, moment.at, out.path, { force: true });
        expect(readFileSync(join(out.path, "a.txt"), "utf8")).toBe(moment.text);
      } finally {
        out.remove();
      }
    }
    // The oldest moments are gone, and say so.
    await expect(restoreAt(store, SET, moments[0]?.at ?? 0, join(tempDir().path, "x"))).rejects.toThrow(/before the point-in-time history/);
  });

  it("PITR costs at most one request per applied message beyond the mirror's own, plus preserving replaced content", async () => {
    class CountingStore extends MemoryStore {
      writes = 0;
      override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
        if (key.startsWith(historyPrefix(SET))) this.writes += 1;
        return super.put(key, body, meta);
      }
    }
    const store = new CountingStore();
    const applier = new Applier({ store, log: () => {}, history: { days: 7 } });
    const records = Array.from({ length: 50 }, (_, i) => putRecord(i + 1, `f${i}.txt`, `file ${i}`));
    await applier.applyMessage(signedIncoming("first", SET, messageBody(SET, records)));
    // The first message of a set also writes its first checkpoint (summary and manifest).
    expect(store.writes).toBe(3);
    store.writes = 0;
    for (let m = 0; m < 5; m++) {
      const batch = Array.from({ length: 50 }, (_, i) => putRecord(51 + m * 50 + i, `f${i}.txt`, `file ${i} v${m}`));
      await applier.applyMessage(signedIncoming(`m${m}`, SET, messageBody(SET, batch)));
    }
    expect(store.writes).toBe(5);
  });
});

describe("what the history costs per applied message", () => {
  const files = (n: number, seq0: number, version: string) => Array.from({ length: n }, (_, i) => putRecord(seq0 + i, `d/f${i}.txt`, `file ${i} ${version}`));
  const dataKeys = (requests: string[], method: string) => requests.filter((r) => r.startsWith(`${method} ${PREFIX.data}`));

  it("on a versioned bucket: N overwrites cost N PUTs and one segment PUT, no HEAD and no COPY; every moment restores from the versions", async () => {
    const store = new RequestLog({ versioned: true });
    const clock = testClock();
    const applier = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history: { days: 7 } });
    const n = 20;
    const moments: number[] = [];
    for (let m = 0; m < 4; m++) {
      moments.push(clock.advance(1000));
      store.clear();
      const records = files(n, 1 + m * n, `v${m}`).map((r) => ({ ...r, at: clock.now() }));
      expect(await applier.applyMessage(signedIncoming(`m${m}`, SET, messageBody(SET, records)))).toMatchObject({ kind: "applied" });
      if (m === 0) continue;
      // Nothing before a replace; the one HEAD allowed is of the next segment's key (a checkpoint the status does not show yet).
      const nextSegment = (r: string) => r.startsWith(`HEAD ${segmentsPrefix(SET)}`);
      expect(store.requests.filter((r) => (r.startsWith("HEAD ") && !nextSegment(r)) || r.startsWith("COPY "))).toEqual([]);
      expect(store.requests.filter(nextSegment).length).toBeLessThanOrEqual(1);
      expect(dataKeys(store.requests, "PUT")).toHaveLength(n);
      expect(store.requests.filter((r) => r.startsWith(`PUT ${historyPrefix(SET)}`))).toEqual([expect.stringMatching(/segments\/0+\d\.jsonl\.gz$/)]);
    }
    expect([...store.objects.keys()].filter((k) => k.startsWith(PREFIX.preserved))).toEqual([]);
    for (const [m, at] of moments.entries()) {
      const out = tempDir("tidemark-at-");
      try {
        await restoreAt(store, SET, at, out.path, { force: true });
        expect(readFileSync(join(out.path, "d/f7.txt"), "utf8")).toBe(`file 7 v${m}`);
      } finally {
        out.remove();
      }
    }
  });

  it("on an unversioned bucket: no HEAD for new paths of a new set nor for paths this applier wrote; a cold applier HEADs what it replaces", async () => {
    const store = new RequestLog();
    const clock = testClock();
    const history = { days: 7 };
    const warm = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history });
    const n = 20;
    const send = async (applier: Applier, m: number) => {
      const at = clock.advance(1000);
      store.clear();
      const records = files(n, 1 + m * n, `v${m}`).map((r) => ({ ...r, at }));
      expect(await applier.applyMessage(signedIncoming(`m${m}`, SET, messageBody(SET, records)))).toMatchObject({ kind: "applied" });
      return at;
    };
    const moments = [await send(warm, 0)];
    // The set's first checkpoint listed the (empty) mirror: the initial mirror HEADs nothing before its puts.
    expect(dataKeys(store.requests, "HEAD")).toEqual([]);
    moments.push(await send(warm, 1));
    // What it replaces it wrote itself: its hash is known, only its preserved copy is looked for and made.
    expect(dataKeys(store.requests, "HEAD")).toEqual([]);
    expect(store.requests.filter((r) => r.startsWith(`COPY ${PREFIX.preserved}`))).toHaveLength(n);
    moments.push(await send(warm, 2));
    expect(dataKeys(store.requests, "HEAD")).toEqual([]);
    // A new instance knows nothing: it asks before it replaces.
    const cold = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history });
    moments.push(await send(cold, 3));
    expect(dataKeys(store.requests, "HEAD")).toHaveLength(n);
    for (const [m, at] of moments.entries()) {
      const out = tempDir("tidemark-at-");
      try {
        await restoreAt(store, SET, at, out.path, { force: true });
        expect(readFileSync(join(out.path, "d/f3.txt"), "utf8")).toBe(`file 3 v${m}`);
      } finally {
        out.remove();
      }
    }
  });

  it("a file removed from the target behind a warm applier's back does not hold up the next change of its path (unversioned bucket)", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {}, history: { days: 7 } });
    await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a.txt", "one"), putRecord(2, "b.txt", "two")])));
    await store.delete(`${PREFIX.data}${SET}/a.txt`);
    expect(await applier.applyMessage(signedIncoming("m2", SET, messageBody(SET, [putRecord(3, "a.txt", "three")])))).toMatchObject({ kind: "applied" });
    expect((await store.get(`${PREFIX.data}${SET}/a.txt`))?.body.toString()).toBe("three");
  });

  it("on a versioned store that answers writes without their version, the history asks for it and still restores each moment", async () => {
    class Reticent extends MemoryStore {
      override async put(key: string, body: Uint8Array, meta?: Record<string, string>): Promise<WriteResult> {
        const { etag } = await super.put(key, body, meta);
        return etag !== undefined ? { etag } : {};
      }
    }
    const store = new Reticent({ versioned: true });
    const clock = testClock();
    const applier = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history: { days: 7 } });
    const moments: number[] = [];
    for (let m = 0; m < 3; m++) {
      moments.push(clock.advance(1000));
      await applier.applyMessage(signedIncoming(`m${m}`, SET, messageBody(SET, [{ ...putRecord(m + 1, "a.txt", `version ${m}`), at: clock.now() }])));
    }
    for (const [m, at] of moments.entries()) {
      const out = tempDir("tidemark-at-");
      try {
        await restoreAt(store, SET, at, out.path, { force: true });
        expect(readFileSync(join(out.path, "a.txt"), "utf8")).toBe(`version ${m}`);
      } finally {
        out.remove();
      }
    }
  });

  it("an instance that applied a set before another one did forgets what it knew of it (unversioned bucket)", async () => {
    const store = new MemoryStore();
    const clock = testClock();
    const history = { days: 7 };
    const a = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history });
    const b = new Applier({ store, log: () => {}, now: () => new Date(clock.now()), history });
    const moments: { at: number; text: string }[] = [];
    // Lambda hands the set's message group to whichever instance polls: a, b, a, b, a.
    for (const [i, applier] of [a, b, a, b, a, a].entries()) {
      const at = clock.advance(1000);
      const text = `version ${i}`;
      await applier.applyMessage(signedIncoming(`m${i}`, SET, messageBody(SET, [{ ...putRecord(i + 1, "a.txt", text), at }])));
      moments.push({ at, text });
    }
    for (const moment of moments) {
      const out = tempDir("tidemark-at-");
      try {
        await restoreAt(store, SET, moment.at, out.path, { force: true });
        expect(readFileSync(join(out.path, "a.txt"), "utf8")).toBe(moment.text);
      } finally {
        out.remove();
      }
    }
  });
});

describe("checkpoints", () => {
  it("read only the objects written since the previous checkpoint, and still see a chmod", async () => {
    class CountingStore extends MemoryStore {
      liveHeads = 0;
      override async head(key: string) {
        if (key.startsWith(`${PREFIX.data}${SET}/`)) this.liveHeads += 1;
        return super.head(key);
      }
    }
    const store = new CountingStore();
    const applier = new Applier({ store, log: () => {}, history: { days: 7, checkpointEvery: 1 } });
    await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, Array.from({ length: 40 }, (_, i) => putRecord(i + 1, `f${i}.txt`, `file ${i}`)))));
    // S3 stamps objects to the second: the next checkpoint trusts only objects written a second before this one.
    await new Promise((resolve) => setTimeout(resolve, 2_100));
    await applier.applyMessage(signedIncoming("m2", SET, messageBody(SET, [putRecord(41, "g.txt", "g")])));
    store.liveHeads = 0;
    await applier.applyMessage(signedIncoming("m3", SET, messageBody(SET, [putRecord(42, "f1.txt", "changed"), putRecord(43, "f2.txt", "file 2", 0o600)])));
    // Three HEADs for the checkpoint (the two, and g.txt written with the last one): not 41. None before replacing: this
    // applier wrote f1 and f2, so it knows what they held.
    expect(store.liveHeads).toBe(3);
    const out = tempDir("tidemark-at-");
    cleanups.push(() => out.remove());
    await restoreAt(store, SET, Date.now(), out.path, { force: true });
    expect(readFileSync(join(out.path, "f1.txt"), "utf8")).toBe("changed");
    expect((await picture(out.path))["f2.txt"]).toMatch(/^file 600 /);
    expect(Object.keys(await picture(out.path))).toHaveLength(41);
  });
});

describe("volume sets", () => {
  it("restore --at rebuilds the image as it was at each moment", async () => {
    const clock = testClock();
    const image = Buffer.alloc(6 * BLOCK_SIZE);
    randomBytes(2 * BLOCK_SIZE).copy(image, BLOCK_SIZE);
    const h = volumeHarness(image, undefined, new MemoryStore(), { history: { days: 7, checkpointEvery: 3 }, now: clock.now });
    cleanups.push(() => h.close());
    clock.advance(1000);
    await h.agent.start();
    await h.agent.drain(VOLUME_SET);
    const moments: { at: number; image: Buffer }[] = [{ at: clock.now(), image: readFileSync(h.image) }];
    const random = seededRandom(7);
    for (let step = 0; step < 10; step++) {
      const fd = openSync(h.image, "r+");
      try {
        const offset = random(6) * BLOCK_SIZE + random(1000);
        writeSync(fd, random(4) === 0 ? Buffer.alloc(BLOCK_SIZE) : randomBytes(4096), 0, undefined, offset);
      } finally {
        closeSync(fd);
      }
      if (step === 6) truncateSync(h.image, 7 * BLOCK_SIZE + 100);
      const at = clock.advance(1000);
      await h.agent.scan(VOLUME_SET);
      moments.push({ at, image: readFileSync(h.image) });
      if (step % 2 === 1) await h.agent.drain(VOLUME_SET);
    }
    await h.agent.drain(VOLUME_SET);
    const out = tempDir("tidemark-at-volume-");
    cleanups.push(() => out.remove());
    for (const [i, moment] of moments.entries()) {
      const to = join(out.path, `at-${i}.img`);
      const result = await restoreAt(h.store, VOLUME_SET, moment.at + 500, to);
      expect(result.kind).toBe("volume");
      expect(readFileSync(to).equals(moment.image), `moment ${i}`).toBe(true);
    }
  });
});

describe("timeline", () => {
  it("shows the restorable range and the markers inside it", async () => {
    const store = new MemoryStore();
    const clock = testClock();
    const h = harness(store, clock);
    writeFileSync(join(h.src.path, "a.txt"), "a");
    const first = clock.advance(1000);
    await h.agent.start();
    clock.advance(1000);
    const marker = await h.agent.insertMarker(SET, { fields: { action: "snapshot", label: "nightly", timeoutSeconds: 60 } });
    writeFileSync(join(h.src.path, "b.txt"), "b");
    const last = clock.advance(1000);
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    const timeline = await readTimeline(store, SET);
    expect(timeline).toMatchObject({ set: SET, from: first - 1, to: last, changes: 2 });
    expect(timeline.markers).toEqual([{ seq: marker.seq, at: first + 1000, id: marker.id, action: "snapshot", label: "nightly" }]);
    const text = describeTimeline(timeline);
    expect(text).toContain(`any moment from ${new Date(first - 1).toISOString()} to ${new Date(last).toISOString()} restores`);
    expect(text).toContain("nightly");
    expect(describeTimeline({ ...timeline, changes: 1, segments: 1, checkpoints: 1 })).toContain("1 change in 1 segment, 1 checkpoint;");
    expect(describeTimeline({ ...timeline, changes: 3, segments: 2, checkpoints: 0 })).toContain("3 changes in 2 segments, 0 checkpoints;");
  });

  it("lists a marker sent straight to the queue too", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {}, history: { days: 7 } });
    await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a.txt", "a")])));
    await applier.applyMessage({ messageId: "m2", groupId: SET, body: JSON.stringify({ v: 1, set: SET, task: { id: "from-console", label: "console" } }) });
    expect((await readTimeline(store, SET)).markers).toEqual([expect.objectContaining({ seq: 1, id: "from-console", action: "snapshot", label: "console" })]);
  });

  it("says so when a set has no history", async () => {
    await expect(readTimeline(new MemoryStore(), SET)).rejects.toThrow(/no point-in-time history/);
  });
});

describe("moments and settings", () => {
  it("reads ISO 8601 (with or without a zone) and spans ago, and refuses anything else", () => {
    const now = Date.parse("2026-11-30T12:00:00Z");
    expect(parseMoment("2026-11-30T10:15:02.250Z", now)).toBe(Date.parse("2026-11-30T10:15:02.250Z"));
    expect(parseMoment("2026-11-30T10:15:02+01:00", now)).toBe(Date.parse("2026-11-30T09:15:02Z"));
    expect(parseMoment("2026-11-30T10:15", now)).toBe(new Date(2026, 10, 30, 10, 15).getTime());
    expect(parseMoment("2026-11-30", now)).toBe(new Date(2026, 10, 30).getTime());
    expect(parseMoment("15m", now)).toBe(now - 15 * 60_000);
    expect(parseMoment("2h ago", now)).toBe(now - 2 * 3_600_000);
    expect(parseMoment("3d", now)).toBe(now - 3 * DAY_MS);
    for (const bad of ["yesterday", "15", "2026-13-45T99:00", "-5m", ""]) expect(() => parseMoment(bad, now), bad).toThrow(TimeSpecError);
    // A usage error (the CLI exits 2), saying what it accepts.
    expect(() => parseMoment("yesterday", now)).toThrow(UsageError);
    expect(() => parseMoment("yesterday", now)).toThrow('"yesterday" is not a moment: use ISO 8601 (2026-11-30T10:15:02.250Z, or local time without a zone) or a span ago (90s, 15m, 2h, 3d)');
  });

  it("reads the window from TIDEMARK_POINT_IN_TIME_DAYS, 7 days by default", () => {
    expect(historySettingsFromEnvironment({})).toEqual({ days: 7 });
    expect(historySettingsFromEnvironment({ TIDEMARK_POINT_IN_TIME_DAYS: "0" })).toEqual({ days: 0 });
    expect(() => historySettingsFromEnvironment({ TIDEMARK_POINT_IN_TIME_DAYS: "seven" })).toThrow(/whole number of days/);
  });
});
