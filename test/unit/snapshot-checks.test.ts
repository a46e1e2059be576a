// The checks of a marker's snapshot (DESIGN 8b): the digest the marker carries
// against the snapshot's manifest, and the verification of the snapshot's
// content right after it was taken, on file sets and volume sets, with damage
// done behind the applier's back, and across invocations.

import { randomBytes } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { readTaskResult } from "../../lambdas/target/index.ts";
import { fileSetDigest } from "../../contract/digest.ts";
import { blockDataKey, dataKey, preservedKey, snapshotProofKey, statusKey } from "../../contract/layout.ts";
import { DEFAULT_TASK_TIMEOUT_SECONDS, type SnapshotSummary, type TaskFields } from "../../contract/tasks.ts";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { MarkerContinuesError } from "../../lambdas/applier/markers.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { SNAPSHOT_CHECKS_FAILED_METRIC } from "../../lambdas/applier/metrics.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readManifest, readSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { VolumeMap } from "../../lambdas/volumes/block-map.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { signedIncoming } from "../support/messages.ts";
import { VOLUME_SET, volumeHarness } from "../support/volume-harness.ts";

const SET = "app";

function fields(extra: Partial<TaskFields> = {}): TaskFields {
  return { action: "snapshot", timeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS, ...extra };
}

/** A marker through the whole pipeline: its task's result and its snapshot's summary. */
async function marker(h: Harness): Promise<{ status: string; error?: string; outputs: Record<string, unknown>; snapshot: SnapshotSummary }> {
  const queued = await h.agent.insertMarker(SET, { fields: fields() });
  await h.agent.drain(SET);
  const result = await readTaskResult(h.store, SET, queued.id);
  if (!result) throw new Error(`no result for task ${queued.id}`);
  return { status: result.status, ...(result.error !== undefined ? { error: result.error } : {}), outputs: result.outputs, snapshot: await readSnapshot(h.store, SET, `snap-${queued.id}`) };
}

describe("a file set's snapshot at a marker", () => {
  let h: Harness;
  const logged: string[] = [];

  beforeEach(async () => {
    logged.length = 0;
    // The applier's log: where a failed check puts its metric.
    h = agentHarness(SET, {}, { log: (line) => logged.push(line) });
    const src = h.src.path;
    mkdirSync(join(src, "docs/Deep/ér"), { recursive: true });
    writeFileSync(join(src, "docs/a.txt"), "version one");
    writeFileSync(join(src, "docs/B.txt"), "upper case");
    // Beyond U+FFFF and just below it: UTF-16 order and byte order disagree on these two.
    writeFileSync(join(src, "docs/\u{1F600}.txt"), "astral");
    writeFileSync(join(src, "docs/\uFF5E.txt"), "fullwidth tilde");
    writeFileSync(join(src, "docs/Deep/ér/é.bin"), randomBytes(3 * BLOCK_SIZE + 5));
    symlinkSync("docs/a.txt", join(src, "link"));
    await h.agent.start();
  });
  afterEach(() => h.close());

  it("is succeeded, with its digest matched and its content verified", async () => {
    const { status, outputs, snapshot } = await marker(h);
    expect(status).toBe("succeeded");
    expect(outputs).toMatchObject({ digest: "matched", verification: "verified" });
    expect(snapshot.digest).toMatchObject({ status: "matched", source: { entries: 9, files: 5 } });
    expect(snapshot.digest?.target).toEqual(snapshot.digest?.source);
    // The digest over the manifest in any order is the one the agent computed over its index in byte order.
    expect(fileSetDigest((await readManifest(h.store, snapshot)).reverse())).toEqual(snapshot.digest?.source);
    expect(snapshot.verification).toMatchObject({ status: "verified", objects: 5, failureCount: 0, failures: [] });
    expect(logged.filter((line) => line.includes(SNAPSHOT_CHECKS_FAILED_METRIC))).toEqual([]);
  });

  it("fails, naming the path, when an object of the mirror was deleted behind the applier's back", async () => {
    expect((await marker(h)).status).toBe("succeeded");
    await h.store.delete(dataKey(SET, "docs/B.txt"));
    const { status, error, outputs, snapshot } = await marker(h);
    expect(status).toBe("failed");
    expect(error).toContain("docs/B.txt: missing on the target");
    expect(outputs).toMatchObject({ snapshotId: snapshot.id, digest: "mismatch" });
    expect(snapshot.digest).toMatchObject({ status: "mismatch", differenceCount: 1, differences: [{ path: "docs/B.txt", problem: expect.stringContaining("missing on the target") }] });
    const metric = logged.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line[SNAPSHOT_CHECKS_FAILED_METRIC] === 1);
    expect(metric).toMatchObject({ set: SET, snapshot: snapshot.id, digest: "mismatch", _aws: { CloudWatchMetrics: [{ Namespace: "Tidemark", Metrics: [{ Name: SNAPSHOT_CHECKS_FAILED_METRIC }] }] } });
    // The set's status keeps it, so `tidemark status` names the failed recovery point.
    expect((await readSetStatus(h.store, SET)).lastSnapshot).toEqual({ id: snapshot.id, takenAt: snapshot.takenAt, digest: "mismatch", verification: "verified" });
  });

  it("fails verification, naming the path, when an object's bytes were altered behind the applier's back (its metadata kept)", async () => {
    expect((await marker(h)).status).toBe("succeeded");
    const key = dataKey(SET, "docs/a.txt");
    const head = await h.store.head(key);
    await h.store.put(key, Buffer.from("version 0ne"), head?.meta);
    const { status, error, snapshot } = await marker(h);
    // The metadata still says what the source holds: the digest matches, the content does not.
    expect(snapshot.digest?.status).toBe("matched");
    expect(status).toBe("failed");
    expect(error).toContain("docs/a.txt");
    expect(snapshot.verification).toMatchObject({ status: "failed", failureCount: 1, failures: [{ path: "docs/a.txt", key, problem: expect.stringContaining("the snapshot says") }] });
  });

  it("does not trust a previous verification's proof that was changed after it was recorded", async () => {
    const first = await marker(h);
    const key = dataKey(SET, "docs/a.txt");
    await h.store.put(key, Buffer.from("version 0ne"), (await h.store.head(key))?.meta);
    // Behind the applier's back, the proof now vouches for the altered object's tag.
    const proofKey = snapshotProofKey(SET, first.snapshot.id);
    const proof = JSON.parse(gunzipSync((await h.store.get(proofKey))?.body ?? Buffer.alloc(0)).toString("utf8")) as Record<string, [string, string]>;
    proof[key] = [h.store.objects.get(key)?.etag ?? "", proof[key]?.[1] ?? ""];
    await h.store.put(proofKey, gzipSync(JSON.stringify(proof)));
    const { status, snapshot } = await marker(h);
    expect(status).toBe("failed");
    expect(snapshot.verification).toMatchObject({ status: "failed", trusted: 0, failures: [{ path: "docs/a.txt" }] });
  });

  it("fails verification, naming the path, when preserved content an older snapshot needs was altered", async () => {
    const first = await marker(h);
    writeFileSync(join(h.src.path, "docs/a.txt"), "version two");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    const old = (await readManifest(h.store, first.snapshot)).find((e) => e.path === "docs/a.txt")?.sha256 ?? "";
    const key = preservedKey(SET, old);
    expect(await h.store.head(key)).toBeDefined();
    await h.store.put(key, Buffer.from("not version one"), (await h.store.head(key))?.meta);
    const { status, error, snapshot } = await marker(h);
    expect(status).toBe("failed");
    expect(error).toContain(`docs/a.txt (snapshot ${first.snapshot.id})`);
    expect(snapshot.verification?.failures).toEqual([{ path: `docs/a.txt (snapshot ${first.snapshot.id})`, key, problem: expect.stringContaining("the snapshot says") }]);
  });

  it("says unverified for the digest of a marker sent straight to the queue, and still verifies the content", async () => {
    await h.agent.drain(SET);
    const outcome = await h.transport.applier.applyMessage({ messageId: "console-1", groupId: SET, body: JSON.stringify({ v: 1, set: SET, task: { label: "console" } }) });
    expect(outcome).toMatchObject({ kind: "marker", status: "succeeded" });
    const snapshot = await readSnapshot(h.store, SET, "snap-sqs-console-1");
    expect(snapshot.digest).toMatchObject({ status: "unverified", reason: expect.stringContaining("no barrier scan") });
    expect(snapshot.digest?.source).toBeUndefined();
    expect(snapshot.verification?.status).toBe("verified");
    expect(await readTaskResult(h.store, SET, "sqs-console-1")).toMatchObject({ status: "succeeded", outputs: { digest: "unverified", verification: "verified" } });
  });
});

describe("a large set's digest and a versioned bucket's verification", () => {
  it("names the path from the marker's staged list of a set too large to travel inline, and deletes that list once read", async () => {
    const h = agentHarness(SET);
    try {
      // 4,000 entries: their gzip'ed list is larger than a message takes inline.
      for (let d = 0; d < 40; d++) {
        mkdirSync(join(h.src.path, `d${d}`));
        for (let i = 0; i < 100; i++) writeFileSync(join(h.src.path, `d${d}`, `file-${i}.txt`), `${d}/${i}`);
      }
      await h.agent.start();
      expect((await marker(h)).status).toBe("succeeded");
      await h.store.delete(dataKey(SET, "d17/file-42.txt"));
      const staged = h.transport.stagedBytes;
      const { status, error, snapshot } = await marker(h);
      // Nothing changed on the source: what was staged is the list (its base64 is over the 192 KiB a message carries inline).
      expect(h.transport.stagedBytes - staged).toBeGreaterThan(144 * 1024);
      expect(status).toBe("failed");
      expect(error).toContain("d17/file-42.txt: missing on the target");
      expect(snapshot.digest).toMatchObject({ status: "mismatch", differenceCount: 1, source: { entries: 4040 }, target: { entries: 4039 } });
      expect([...h.store.objects.keys()].filter((key) => key.startsWith("staging/"))).toEqual([]);
    } finally {
      await h.close();
    }
  });

  it("on a versioned bucket, trusts the objects the previous verification proved and checks the rest by their versions' checksums", async () => {
    const h = agentHarness(SET, {}, { store: new MemoryStore({ versioned: true }) });
    try {
      for (let i = 0; i < 20; i++) writeFileSync(join(h.src.path, `f${i}.txt`), `file ${i}`);
      await h.agent.start();
      expect((await marker(h)).snapshot.verification).toMatchObject({ status: "verified", objects: 20, byChecksum: 20, trusted: 0 });
      writeFileSync(join(h.src.path, "f3.txt"), "changed");
      await h.agent.scan(SET);
      const second = await marker(h);
      // The changed file's new version is checked, the rest trusted; its old content stays a noncurrent version (nothing preserved aside).
      expect(second.snapshot.verification).toMatchObject({ status: "verified", objects: 20, byChecksum: 1, trusted: 19 });
      // A version the snapshot names, altered in place behind the applier's back (a new current version).
      const key = dataKey(SET, "f5.txt");
      await h.store.put(key, Buffer.from("file X"), (await h.store.head(key))?.meta);
      const third = await marker(h);
      expect(third.status).toBe("failed");
      expect(third.snapshot.verification?.failures).toEqual([{ path: "f5.txt", key, problem: expect.stringContaining("the snapshot says") }]);
    } finally {
      await h.close();
    }
  });
});

describe("a volume set's snapshot at a marker", () => {
  const image = () => Buffer.concat([randomBytes(BLOCK_SIZE), Buffer.alloc(BLOCK_SIZE), randomBytes(BLOCK_SIZE), randomBytes(1000)]);

  it("carries a digest of the block map, matched by the snapshot's block manifest, and its blocks verified", async () => {
    const v = volumeHarness(image());
    try {
      await v.agent.start();
      const { id, status, outputs } = await v.marker();
      expect(status).toBe("succeeded");
      expect(outputs).toMatchObject({ digest: "matched", verification: "verified" });
      const snapshot = await readSnapshot(v.store, VOLUME_SET, `snap-${id}`);
      // The zero block is not in the map on either side.
      expect(snapshot.digest).toMatchObject({ status: "matched", source: { entries: 3, bytes: 2 * BLOCK_SIZE + 1000, volumeSize: 3 * BLOCK_SIZE + 1000 } });
      expect(snapshot.verification).toMatchObject({ status: "verified", objects: 3 });
    } finally {
      await v.close();
    }
  });

  it("fails when the block map differs from the source's, or a block's content is gone", async () => {
    const v = volumeHarness(image());
    try {
      await v.agent.start();
      const first = await v.marker();
      expect(first.status).toBe("succeeded");
      const map = await VolumeMap.open(v.store, VOLUME_SET);
      const blocks = await map.entries();
      const last = blocks.at(-1);
      if (!last) throw new Error("no blocks");
      // Behind the applier's back: block 0 now names the last block's content, and that content is deleted.
      await map.write(0, last.sha256, 3 * BLOCK_SIZE + 1000);
      await map.flush();
      await v.store.delete(blockDataKey(VOLUME_SET, last.sha256));
      const second = await v.marker();
      expect(second.status).toBe("failed");
      const snapshot = await readSnapshot(v.store, VOLUME_SET, `snap-${second.id}`);
      expect(snapshot.digest).toMatchObject({ status: "mismatch", reason: expect.stringContaining("block map differs") });
      expect(snapshot.verification).toMatchObject({ status: "failed", failures: [{ path: "block 0", key: blockDataKey(VOLUME_SET, last.sha256), problem: expect.stringContaining("missing") }] });
    } finally {
      await v.close();
    }
  });
});

describe("a snapshot's verification larger than one invocation", () => {
  /** HEADs of the mirror once a snapshot's summary is written (the verification's), slowed down and counted. */
  class SlowStore extends MemoryStore {
    verifying = false;
    heads = new Map<string, number>();
    override async put(key: string, body: Uint8Array, meta?: Record<string, string>) {
      if (key.endsWith("/snapshot.json")) this.verifying = true;
      return super.put(key, body, meta);
    }
    override async head(key: string) {
      if (this.verifying && key.startsWith("data/")) {
        this.heads.set(key, (this.heads.get(key) ?? 0) + 1);
        await new Promise((resolve) => setTimeout(resolve, 600));
      }
      return super.head(key);
    }
  }

  it("saves its progress near the deadline and goes on where it stopped in the next invocation, checking each object once", async () => {
    const store = new SlowStore();
    const h = agentHarness(SET, {}, { store });
    try {
      for (let i = 0; i < 300; i++) writeFileSync(join(h.src.path, `f${i}.txt`), `file ${i}`);
      await h.agent.start();
      await h.agent.drain(SET);
      // The queue takes the marker's message without applying it: the test plays the invocations.
      h.transport.lose = Number.MAX_SAFE_INTEGER;
      const before = h.transport.bodies.length;
      const queued = await h.agent.insertMarker(SET, { fields: fields() });
      await h.agent.drain(SET);
      const [body] = h.transport.bodies.slice(before);
      if (!body) throw new Error("the marker was not sent");
      const message = signedIncoming("m1", SET, body, h.transport.key);
      const applier = new Applier({ store, log: () => {} });

      // 10 s of an invocation are kept for writing results: 2 s are left, less than a round of 128 slow HEADs takes.
      const deadline = Date.now() + 12_000;
      await expect(applier.applyMessage(message, { remainingMs: () => deadline - Date.now() })).rejects.toThrow(MarkerContinuesError);
      const running = await readTaskResult(store, SET, queued.id);
      expect(running).toMatchObject({ status: "running", progressAttempt: 1 });
      const pending = await readSnapshot(store, SET, `snap-${queued.id}`);
      expect(pending.verification?.status).toBe("pending");
      const done = pending.verification?.next ?? 0;
      expect(done).toBeGreaterThan(0);
      expect(done).toBeLessThan(300);
      const checkpoint = JSON.parse((await store.get(statusKey(SET)))?.body.toString() ?? "{}").lastSeq;

      expect(await applier.applyMessage(message, { remainingMs: () => 600_000 })).toMatchObject({ kind: "applied" });
      expect(await readTaskResult(store, SET, queued.id)).toMatchObject({ status: "succeeded", attempts: 2, outputs: { verification: "verified" } });
      expect((await readSnapshot(store, SET, `snap-${queued.id}`)).verification).toMatchObject({ status: "verified", objects: 300, failureCount: 0 });
      // Every object was checked once: the second invocation began where the first saved its progress.
      expect(store.heads.size).toBe(300);
      expect([...store.heads.values()].every((n) => n === 1)).toBe(true);
      expect(JSON.parse((await store.get(statusKey(SET)))?.body.toString() ?? "{}").lastSeq).toBeGreaterThan(checkpoint);
    } finally {
      await h.close();
    }
  });
});
