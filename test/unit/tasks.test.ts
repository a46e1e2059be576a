// Task markers through the whole pipeline on an in-memory target: the
// barrier, the applier's hold while an action runs, results, snapshots that
// restore after the mirror moved on (with and without bucket versioning),
// retention, and the actions against protocol-level fakes of AWS.

import { randomBytes } from "node:crypto";
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BackupClient } from "@aws-sdk/client-backup";
import { EventBridgeClient } from "@aws-sdk/client-eventbridge";
import { LambdaClient } from "@aws-sdk/client-lambda";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { queueTask, runPrune, runVerify, TasksDisabledError } from "../../agent/operations.ts";
import { restoreSnapshot } from "../../agent/restore.ts";
import { waitForTask } from "../../agent/task-results.ts";
import { readTaskResult } from "../../lambdas/target/index.ts";
import { PREFIX, statusKey } from "../../contract/layout.ts";
import { DEFAULT_TASK_TIMEOUT_SECONDS, type TaskFields, type TaskResult } from "../../contract/tasks.ts";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import type { TaskSettings } from "../../lambdas/applier/markers.ts";
import { clientConfig } from "../../lambdas/aws-clients.ts";
import { EventAction } from "../../lambdas/tasks/actions.ts";
import { BackupAction, InvokeAction } from "../../lambdas/tasks/aws-actions.ts";
import { EventBridgeSink } from "../../lambdas/tasks/event-sinks.ts";
import { listSnapshots, readSnapshot } from "../../lambdas/tasks/snapshots.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { startFakeAws, type FakeAws } from "../support/aws-fakes.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, tempDir } from "../support/tree.ts";

const SET = "app";

function fields(extra: Partial<TaskFields> = {}): TaskFields {
  return { action: "snapshot", timeoutSeconds: DEFAULT_TASK_TIMEOUT_SECONDS, ...extra };
}

async function result(h: Harness, id: string): Promise<TaskResult | undefined> {
  return readTaskResult(h.store, SET, id);
}

const keysUnder = (h: Harness, prefix: string) => [...h.store.objects.keys()].filter((k) => k.startsWith(prefix)).sort();

describe.each([
  ["an unversioned bucket (content preserved)", false],
  ["a versioned bucket (object versions)", true],
])("snapshots on %s", (_what, versioned) => {
  let h: Harness;
  let out: ReturnType<typeof tempDir>;

  beforeEach(async () => {
    // Snapshots alone: with point-in-time history on, prune leaves content to the history's retention (history.test.ts).
    h = agentHarness(SET, {}, { store: new MemoryStore({ versioned }), history: { days: 0 } });
    out = tempDir("tidemark-restore-");
  });
  afterEach(async () => {
    await h.close();
    out.remove();
  });

  /** Restores a snapshot into a fresh folder and returns its picture. */
  const restored = async (id: string) => {
    const to = join(out.path, id);
    await restoreSnapshot(h.store, await readSnapshot(h.store, SET, id), to);
    return pictureOfSource(to, { microseconds: true, dirMtimes: true });
  };

  it("restore an old snapshot byte for byte after its files were overwritten, changed in place, renamed and deleted", async () => {
    const src = h.src.path;
    const big = randomBytes(3 * BLOCK_SIZE + 7);
    mkdirSync(join(src, "docs/empty"), { recursive: true });
    writeFileSync(join(src, "docs/a.txt"), "version one");
    writeFileSync(join(src, "docs/secret.txt"), "mode 600");
    chmodSync(join(src, "docs/secret.txt"), 0o600);
    writeFileSync(join(src, "big.bin"), big);
    writeFileSync(join(src, "gone.txt"), "deleted later");
    symlinkSync("docs/a.txt", join(src, "link"));
    await h.agent.start();
    const first = await h.agent.insertMarker(SET, { fields: fields({ label: "first" }) });
    const atFirst = await pictureOfSource(src, { microseconds: true, dirMtimes: true });
    await h.agent.drain(SET);

    // The mirror moves on: overwrite, a change inside the large file (a delta), a rename, a delete, a new link target.
    writeFileSync(join(src, "docs/a.txt"), "version two, longer");
    const changed = Buffer.from(big);
    changed.fill(7, BLOCK_SIZE + 5, BLOCK_SIZE + 50);
    writeFileSync(join(src, "big.bin"), changed);
    renameSync(join(src, "docs/secret.txt"), join(src, "docs/renamed.txt"));
    rmSync(join(src, "gone.txt"));
    rmSync(join(src, "link"));
    symlinkSync("big.bin", join(src, "link"));
    // No scan and no watcher here: the marker's barrier alone journals these changes ahead of it.
    const second = await h.agent.insertMarker(SET, { fields: fields({ label: "second" }) });
    const atSecond = await pictureOfSource(src, { microseconds: true, dirMtimes: true });
    await h.agent.drain(SET);

    writeFileSync(join(src, "docs/a.txt"), "version three");
    writeFileSync(join(src, "big.bin"), randomBytes(100));
    rmSync(join(src, "docs"), { recursive: true });
    await h.agent.scan(SET);
    await h.agent.drain(SET);

    const one = await result(h, first.id);
    expect(one).toMatchObject({ status: "succeeded", seq: first.seq, label: "first", outputs: { snapshotId: `snap-${first.id}`, files: 4 } });
    expect(await restored(`snap-${first.id}`)).toEqual(atFirst);
    expect(await restored(`snap-${second.id}`)).toEqual(atSecond);
    expect((await listSnapshots(h.store, SET)).map((s) => s.label)).toEqual(["first", "second"]);
    // Preserved content is only what the live mirror replaced while a snapshot named it, once per content hash:
    // a.txt v1 and v2, big.bin before each change, secret.txt (moved, then deleted: one copy), gone.txt.
    expect(keysUnder(h, PREFIX.preserved).length).toBe(versioned ? 0 : 6);
  });

  it("keeps a snapshot's content when a verification deletes it from the mirror as an orphan", async () => {
    writeFileSync(join(h.src.path, "x.txt"), "in the snapshot");
    await h.agent.start();
    const marker = await h.agent.insertMarker(SET, { fields: fields() });
    await h.agent.drain(SET);
    const expected = await pictureOfSource(h.src.path, { microseconds: true, dirMtimes: true });
    // The source loses the file without the agent journaling it: on the target it is now an orphan.
    rmSync(join(h.src.path, "x.txt"));
    h.journal.index.forget(SET, "x.txt");
    await runVerify(h.operations(), SET, { deep: false, repair: false, orphans: "delete" });
    expect(await h.store.head("data/app/x.txt")).toBeUndefined();
    const to = join(out.path, "orphan");
    await restoreSnapshot(h.store, await readSnapshot(h.store, SET, `snap-${marker.id}`), to);
    expect((await pictureOfSource(to, { microseconds: true, dirMtimes: true }))["x.txt"]).toEqual(expected["x.txt"]);
  });

  it("a snapshot whose invocation died before its result was written is taken again, and its content stays preserved", async () => {
    const store = h.store;
    let failResult = true;
    const put = store.put.bind(store);
    store.put = async (key, body, meta) => {
      if (failResult && key.startsWith("tasks/") && body.toString().includes('"succeeded"')) {
        failResult = false;
        throw new Error("the invocation died");
      }
      return put(key, body, meta);
    };
    writeFileSync(join(h.src.path, "a.txt"), "before");
    await h.agent.start();
    const marker = await h.agent.insertMarker(SET, { fields: fields() });
    const expected = await pictureOfSource(h.src.path, { microseconds: true, dirMtimes: true });
    await expect(h.agent.drain(SET)).rejects.toThrow("the invocation died");
    await h.agent.drain(SET);
    expect(await result(h, marker.id)).toMatchObject({ status: "succeeded", attempts: 2 });
    writeFileSync(join(h.src.path, "a.txt"), "after, longer");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect(await restored(`snap-${marker.id}`)).toEqual(expected);
  });

  it("prune keeps the newest snapshots and deletes only the preserved content no kept snapshot names", async () => {
    const src = h.src.path;
    writeFileSync(join(src, "a.txt"), "one");
    writeFileSync(join(src, "b.txt"), "stays");
    await h.agent.start();
    const first = await h.agent.insertMarker(SET, { fields: fields() });
    await h.agent.drain(SET);
    writeFileSync(join(src, "a.txt"), "two!");
    await h.agent.scan(SET);
    const second = await h.agent.insertMarker(SET, { fields: fields() });
    await h.agent.drain(SET);
    writeFileSync(join(src, "a.txt"), "three");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    const atSecond = await restored(`snap-${second.id}`);

    const report = await runPrune(h.operations(), SET, 1);
    expect(report).toMatchObject({ kept: [`snap-${second.id}`], deleted: [`snap-${first.id}`], contentDeleted: versioned ? 0 : 1 });
    expect((await listSnapshots(h.store, SET)).map((s) => s.id)).toEqual([`snap-${second.id}`]);
    expect(keysUnder(h, PREFIX.preserved).length).toBe(versioned ? 0 : 1);
    rmSync(join(out.path, `snap-${second.id}`), { recursive: true });
    expect(await restored(`snap-${second.id}`)).toEqual(atSecond);
  });
});

describe("snapshot cost", () => {
  /** Counts the HEADs of live objects: what a snapshot spends per object. */
  class CountingStore extends MemoryStore {
    liveHeads = 0;
    override async head(key: string) {
      if (key.startsWith(PREFIX.data)) this.liveHeads += 1;
      return super.head(key);
    }
  }

  it("a snapshot reads only the objects written since the previous one, and still sees a chmod", async () => {
    const store = new CountingStore();
    // Snapshots alone: the history's preservation HEADs every replaced object (its cost is counted in history.test.ts).
    const h = agentHarness(SET, {}, { store, history: { days: 0 } });
    const out = tempDir("tidemark-restore-");
    try {
      for (let i = 0; i < 40; i++) writeFileSync(join(h.src.path, `f${i}.txt`), `file ${i}`);
      await h.agent.start();
      await h.agent.drain(SET);
      // The mirror was written two seconds before the first snapshot: S3 stamps objects to the second.
      await new Promise((resolve) => setTimeout(resolve, 2_100));
      await h.agent.insertMarker(SET, { fields: fields() });
      await h.agent.drain(SET);
      // 40 for the snapshot, 40 for its verification (the first one has no verified snapshot to trust).
      expect(store.liveHeads).toBe(80);
      writeFileSync(join(h.src.path, "f1.txt"), "changed");
      chmodSync(join(h.src.path, "f2.txt"), 0o600);
      store.liveHeads = 0;
      const second = await h.agent.insertMarker(SET, { fields: fields() });
      const expected = await pictureOfSource(h.src.path, { microseconds: true });
      await h.agent.drain(SET);
      // f1 and f2 (the chmod kept f2's content tag but restamped it), each once before it was replaced, once for the snapshot;
      // the verification reads the checksums of f1 and of the two preserved copies of the first snapshot's f1 and f2,
      // and trusts the 39 objects whose tags the first verification proved.
      expect(store.liveHeads).toBe(5);
      expect((await readSnapshot(store, SET, `snap-${second.id}`)).verification).toMatchObject({ status: "verified", objects: 42, byChecksum: 3, trusted: 39, read: 0 });
      await restoreSnapshot(store, await readSnapshot(store, SET, `snap-${second.id}`), out.path);
      expect(await pictureOfSource(out.path, { microseconds: true })).toEqual(expected);
    } finally {
      await h.close();
      out.remove();
    }
  });
});

describe("task markers", () => {
  let h: Harness;
  let aws: FakeAws;
  let settings: TaskSettings;

  const clients = () => clientConfig({ region: "us-east-1", endpoint: aws.endpoint });

  beforeEach(async () => {
    aws = await startFakeAws();
    const events = new EventBridgeSink(new EventBridgeClient(clients()), "tidemark-events");
    settings = {
      events,
      actions: {
        invoke: new InvokeAction(new LambdaClient(clients()), ["arn:aws:lambda:us-east-1:000000000000:function:after-marker", "slow"], {
          region: "us-east-1",
          account: "000000000000",
        }),
        event: new EventAction(events),
        backup: new BackupAction(new BackupClient(clients()), {
          vault: "tidemark-vault",
          roleArn: "arn:aws:iam::000000000000:role/backup",
          defaultResourceArn: "arn:aws:s3:::target-bucket",
        }),
      },
    };
    h = agentHarness(SET, {}, { tasks: settings });
    writeFileSync(join(h.src.path, "before.txt"), "before the marker");
    await h.agent.start();
  });
  afterEach(async () => {
    await h.close();
    await aws.stop();
  });

  it("holds everything after the marker while a slow action runs, and releases it when the timeout passes", async () => {
    aws.functions.set("slow", () => ({ delayMs: 4_000, response: { late: true } }));
    // Every file the applier puts and every status it writes for a task, in order (no clock: what it did, not when).
    const put = h.store.put.bind(h.store);
    const puts: string[] = [];
    vi.spyOn(h.store, "put").mockImplementation(async (key, body, meta) => {
      if (key.startsWith(`data/${SET}/`)) puts.push(key.slice(`data/${SET}/`.length));
      if (key.startsWith(`tasks/${SET}/`)) puts.push(`task ${(JSON.parse(Buffer.from(body).toString("utf8")) as { status: string }).status}`);
      return put(key, body, meta);
    });
    const marker = await h.agent.insertMarker(SET, { fields: fields({ action: "invoke", function: "slow", timeoutSeconds: 1 }) });
    writeFileSync(join(h.src.path, "after.txt"), "after the marker");
    await h.agent.scan(SET);
    const started = Date.now();
    await h.agent.drain(SET);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1_000);
    expect(await h.store.head("data/app/before.txt")).toBeDefined();
    expect(await h.store.head("data/app/after.txt")).toBeDefined();
    // before.txt, ahead of the marker, went while the action ran; after.txt waited until its timeout passed.
    expect(puts, "before.txt, the marker running, its timeout, then after.txt").toEqual(["before.txt", "task running", "task timed-out", "after.txt"]);
    expect(await result(h, marker.id)).toMatchObject({ status: "timed-out", error: expect.stringMatching(/did not finish within 1 s/) });
    expect(aws.invocations.map((i) => i.function)).toEqual(["slow"]);
  });

  it("with timeout 0 applies what follows at once and records the action's result when it finishes", async () => {
    aws.functions.set("slow", () => ({ delayMs: 500, response: { done: 1 } }));
    const marker = await h.agent.insertMarker(SET, { fields: fields({ action: "invoke", function: "slow", timeoutSeconds: 0 }) });
    writeFileSync(join(h.src.path, "after.txt"), "after the marker");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect(await h.store.head("data/app/after.txt")).toBeDefined();
    expect((await result(h, marker.id))?.status).toBe("running");
    await h.transport.applier.settle();
    expect(await result(h, marker.id)).toMatchObject({ status: "succeeded", outputs: { response: { done: 1 } } });
  });

  it("invokes an allow-listed function with the marker's context (and a snapshot first) and keeps its response", async () => {
    aws.functions.set("after-marker", (payload) => ({ response: { saw: payload.snapshotId } }));
    const marker = await h.agent.insertMarker(SET, { fields: fields({ action: "invoke", function: "after-marker", label: "nightly", snapshot: true, input: { mode: "check" } }) });
    await h.agent.drain(SET);
    const snapshotId = `snap-${marker.id}`;
    expect(aws.invocations[0]).toEqual({
      function: "after-marker",
      requested: "arn:aws:lambda:us-east-1:000000000000:function:after-marker",
      payload: expect.objectContaining({ source: "tidemark", set: SET, taskId: marker.id, seq: marker.seq, label: "nightly", action: "invoke", snapshotId, input: { mode: "check" } }),
    });
    expect(await result(h, marker.id)).toMatchObject({ status: "succeeded", outputs: { snapshotId, function: "arn:aws:lambda:us-east-1:000000000000:function:after-marker", response: { saw: snapshotId } } });
    expect(aws.refused).toEqual([]);
  });

  it("records a failing function, a function off the allow-list and a missing one as failed, and applies what follows", async () => {
    aws.functions.set("after-marker", () => ({ error: "database check failed" }));
    aws.functions.set("not-allowed", () => ({ response: 1 }));
    const failing = await h.agent.insertMarker(SET, { fields: fields({ action: "invoke", function: "after-marker" }) });
    const refused = await h.agent.insertMarker(SET, { fields: fields({ action: "invoke", function: "not-allowed" }) });
    writeFileSync(join(h.src.path, "after.txt"), "after the markers");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect(await result(h, failing.id)).toMatchObject({ status: "failed", error: expect.stringContaining("database check failed") });
    expect(await result(h, refused.id)).toMatchObject({ status: "failed", error: expect.stringContaining("not on the target's invoke allow-list") });
    expect(aws.invocations.map((i) => i.function)).toEqual(["after-marker"]);
    expect(await h.store.head("data/app/after.txt")).toBeDefined();
  });

  it("puts an event with the marker's context, starts an idempotent backup job, and announces every finished task", async () => {
    const event = await h.agent.insertMarker(SET, { fields: fields({ action: "event", label: "deploy-42" }) });
    const backup = await h.agent.insertMarker(SET, { fields: fields({ action: "backup" }) });
    await h.agent.drain(SET);
    const mine = aws.events.filter((e) => e.detailType === "Tidemark Task Marker");
    expect(mine).toEqual([{ bus: "tidemark-events", source: "tidemark", detailType: "Tidemark Task Marker", detail: expect.objectContaining({ set: SET, taskId: event.id, label: "deploy-42", seq: event.seq }) }]);
    expect(aws.backupJobs).toEqual([
      expect.objectContaining({ vault: "tidemark-vault", resourceArn: "arn:aws:s3:::target-bucket", token: `${SET}/${backup.id}`, tags: expect.objectContaining({ "tidemark:task": backup.id }) }),
    ]);
    expect(await result(h, backup.id)).toMatchObject({ status: "succeeded", outputs: { backupJobId: aws.backupJobs[0]?.id } });
    expect(aws.events.filter((e) => e.detailType === "Tidemark Task Finished").map((e) => e.detail.id)).toEqual([event.id, backup.id]);
  });

  it("does not run a marker's action again when its message is delivered twice", async () => {
    const marker = await h.agent.insertMarker(SET, { fields: fields({ action: "event" }) });
    await h.agent.drain(SET);
    const body = h.transport.bodies.at(-1) ?? "";
    expect(body).toContain(marker.id);
    // Past the checkpoint: it does not run again.
    await h.transport.send(SET, "again", body);
    expect(aws.events.filter((e) => e.detailType === "Tidemark Task Marker")).toHaveLength(1);
    // A marker sent straight to the queue with the same id is another marker: it runs under an id of its own, and
    // the agent's marker's result stays its own.
    await h.transport.applier.applyMessage({ messageId: "m2", groupId: SET, body: JSON.stringify({ v: 1, set: SET, task: { id: marker.id, action: "event" } }) });
    expect(aws.events.filter((e) => e.detailType === "Tidemark Task Marker")).toHaveLength(2);
    expect(await result(h, marker.id)).toMatchObject({ id: marker.id, seq: marker.seq, generation: marker.generation, status: "succeeded" });
    expect(await result(h, `${marker.id}~queue`)).toMatchObject({ id: `${marker.id}~queue`, requestedId: marker.id, seq: null, status: "succeeded" });
  });

  it("runs an agent's marker whose id a marker sent straight to the queue took first, under an id of its own, and task --wait gets its result, not the other's", async () => {
    const id = "20261130T190000Z-abcdef";
    // An unsigned marker from the queue's console takes the id before the agent's marker reaches the target.
    await h.transport.applier.applyMessage({ messageId: "console", groupId: SET, body: JSON.stringify({ v: 1, set: SET, task: { id, action: "event", label: "console" } }) });
    expect(await result(h, id)).toMatchObject({ seq: null, label: "console", status: "succeeded" });
    const marker = await h.agent.insertMarker(SET, { id, fields: fields({ action: "snapshot", label: "agent" }) });
    await h.agent.drain(SET);
    const own = `${id}~${marker.generation}~${marker.seq}`;
    // The agent's marker ran: its snapshot was taken, under its own id.
    expect(await result(h, own)).toMatchObject({ id: own, requestedId: id, seq: marker.seq, generation: marker.generation, label: "agent", action: "snapshot", status: "succeeded", outputs: { snapshotId: `snap-${own}` } });
    expect(await readSnapshot(h.store, SET, `snap-${own}`)).toBeDefined();
    // The console marker's result is left alone.
    expect(await result(h, id)).toMatchObject({ seq: null, label: "console" });
    // The waiter for the agent's marker takes its marker's result, not the console marker's under the id it asked for.
    const waited = await waitForTask(h.store, SET, id, { seq: marker.seq, generation: marker.generation, pollMs: 1, stallMs: 60_000 });
    expect(waited).toMatchObject({ id: own, seq: marker.seq, label: "agent" });
  });

  it("records markers as skipped when the target disables them, and applies the data around them", async () => {
    await h.close();
    h = agentHarness(SET, {}, { tasks: { ...settings, enabled: false } });
    writeFileSync(join(h.src.path, "before.txt"), "x");
    await h.agent.start();
    const marker = await h.agent.insertMarker(SET, { fields: fields({ action: "event" }) });
    await h.agent.drain(SET);
    expect(await result(h, marker.id)).toMatchObject({ status: "skipped", error: expect.stringContaining("disabled on this target") });
    expect(aws.events.filter((e) => e.detailType === "Tidemark Task Marker")).toEqual([]);
    expect(await h.store.head("data/app/before.txt")).toBeDefined();
  });

  it("refuses to insert a marker when the agent's config disables them", async () => {
    const before = h.journal.sets.counters(SET).nextSeq;
    await expect(queueTask(h.operations(), SET, { fields: fields() }, { file: "tidemark.config.json", tasks: { enabled: false } })).rejects.toThrow(TasksDisabledError);
    expect(h.journal.sets.counters(SET).nextSeq).toBe(before);
  });

  it("runs a marker sent straight to the queue where the queue put it, without moving the checkpoint", async () => {
    await h.agent.drain(SET);
    const applier = h.transport.applier;
    const lastSeq = JSON.parse((await h.store.get(statusKey(SET)))?.body.toString() ?? "{}").lastSeq;
    const outcome = await applier.applyMessage({ messageId: "console-1", groupId: SET, body: JSON.stringify({ v: 1, set: SET, task: { label: "from the console" } }) });
    expect(outcome).toEqual({ kind: "marker", set: SET, task: "sqs-console-1", status: "succeeded" });
    expect(await result(h, "sqs-console-1")).toMatchObject({ seq: null, action: "snapshot", label: "from the console", outputs: { files: 1 } });
    expect(JSON.parse((await h.store.get(statusKey(SET)))?.body.toString() ?? "{}").lastSeq).toBe(lastSeq);
    const bad = await applier.applyMessage({ messageId: "console-2", groupId: SET, body: JSON.stringify({ v: 1, set: SET, task: { action: "reboot" } }) });
    expect(bad).toMatchObject({ kind: "rejected", error: expect.stringContaining("task.action") });
  });

  it("records a marker the stream can no longer reach in order (the set went out of sync) as skipped", async () => {
    await h.agent.drain(SET);
    h.transport.lose = 1;
    writeFileSync(join(h.src.path, "lost.txt"), "lost");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    const marker = await h.agent.insertMarker(SET, { fields: fields() });
    await h.agent.drain(SET);
    expect(await result(h, marker.id)).toMatchObject({ status: "skipped", error: expect.stringContaining("out of sync") });
  });

  it("runs the on-queue and on-transmit commands with the marker's context, and announces the marker once the queue took it", async () => {
    const log = join(h.state.path, "hooks.log");
    const announced: string[] = [];
    h.restart({ announceReceived: async (_set, markers) => void announced.push(...markers.map((m) => m.id)) });
    await h.agent.start();
    const marker = await h.agent.insertMarker(SET, {
      fields: fields({ label: "l1" }),
      onQueue: `echo "queue $TIDEMARK_SET $TIDEMARK_TASK_ID $TIDEMARK_TASK_SEQ $TIDEMARK_TASK_LABEL" >> ${log}`,
      onTransmit: `echo "transmit $TIDEMARK_TASK_ID" >> ${log}`,
    });
    expect(marker.onQueue?.code).toBe(0);
    expect(readFileSync(log, "utf8")).toBe(`queue ${SET} ${marker.id} ${marker.seq} l1\n`);
    expect(announced).toEqual([]);
    await h.agent.drain(SET);
    expect(readFileSync(log, "utf8")).toBe(`queue ${SET} ${marker.id} ${marker.seq} l1\ntransmit ${marker.id}\n`);
    expect(announced).toEqual([marker.id]);
  });

  it("sends a marker only after its on-transmit command ended, also when a second send of the set runs meanwhile", async () => {
    // An in-process command's drain runs beside the agent's own send loop: the second sender saw the hook started and
    // sent the marker while the command still ran, though it runs "just before the marker is sent".
    const log = join(h.state.path, "hooks.log");
    const go = join(h.state.path, "go");
    const announced: string[] = [];
    h.restart({ announceReceived: async (_set, markers) => void announced.push(...markers.map((m) => m.id)) });
    await h.agent.start();
    const marker = await h.agent.insertMarker(SET, {
      fields: fields(),
      onTransmit: `echo started >> ${log}; while [ ! -f ${go} ]; do sleep 0.02; done; echo transmit >> ${log}`,
    });
    const first = h.agent.drain(SET);
    while (!readFileSync(log, { encoding: "utf8", flag: "a+" }).includes("started")) await new Promise((resolve) => setTimeout(resolve, 20));
    const second = h.agent.drain(SET);
    // Without waiting for the command, the second send would have carried the marker by now.
    await Promise.race([second, new Promise((resolve) => setTimeout(resolve, 1_000))]);
    expect(announced).toEqual([]);
    writeFileSync(go, "");
    await Promise.all([first, second]);
    expect(announced).toEqual([marker.id]);
    expect(readFileSync(log, "utf8")).toBe("started\ntransmit\n");
  });

  it("runs a marker whose applier died once again, fails it after a second death, and never holds past the invocation's deadline", async () => {
    const applier = h.transport.applier;
    const marker = (id: string, task: Record<string, unknown>) => ({ messageId: id, groupId: SET, body: JSON.stringify({ v: 1, set: SET, task: { id, ...task } }) });
    const running = (id: string, attempts: number) =>
      h.store.put(`tasks/${SET}/${id}.json`, Buffer.from(JSON.stringify({ id, set: SET, seq: null, action: "event", status: "running", timeoutSeconds: 300, reachedAt: "2026-01-01T00:00:00.000Z", attempts, outputs: {} })));
    await running("died-once", 1);
    await applier.applyMessage(marker("died-once", { action: "event" }));
    expect(await result(h, "died-once")).toMatchObject({ status: "succeeded", attempts: 2, reachedAt: "2026-01-01T00:00:00.000Z" });
    await running("died-twice", 2);
    await applier.applyMessage(marker("died-twice", { action: "event" }));
    expect(await result(h, "died-twice")).toMatchObject({ status: "failed", attempts: 3, error: expect.stringContaining("stopped 2 times") });
    expect(aws.events.filter((e) => e.detailType === "Tidemark Task Marker")).toHaveLength(1);

    // The invocation has 10.8 s left, 0.8 s past the applier's margin (a fixed figure: one counted down from the wall
    // clock made the limit, and so the message, depend on how long the machine took to reach the marker). The function
    // answers after 5 s: had the applier waited for it, the task would have succeeded.
    aws.functions.set("slow", () => ({ delayMs: 5_000 }));
    await applier.applyMessage(marker("deadline", { action: "invoke", function: "slow", timeoutSeconds: 300 }), { remainingMs: () => 10_800 });
    expect(aws.unanswered(), "the applier returned before the function answered (it did not overrun its invocation)").toBe(1);
    expect(await result(h, "deadline")).toMatchObject({ status: "timed-out", error: expect.stringContaining("within 1 s") });
  });

  it("restores nothing through a symlink that leads out of the restore folder", async () => {
    mkdirSync(join(h.src.path, "docs"));
    writeFileSync(join(h.src.path, "docs/a.txt"), "a");
    const marker = await h.agent.insertMarker(SET, { fields: fields() });
    await h.agent.drain(SET);
    const outside = tempDir("tidemark-outside-");
    const to = tempDir("tidemark-restore-");
    try {
      symlinkSync(outside.path, join(to.path, "docs"));
      // The snapshot's folder replaces the link; nothing is written where the link pointed.
      await restoreSnapshot(h.store, await readSnapshot(h.store, SET, `snap-${marker.id}`), to.path, { force: true });
      expect(readdirSync(outside.path)).toEqual([]);
      expect(lstatSync(join(to.path, "docs")).isDirectory()).toBe(true);
      expect(readFileSync(join(to.path, "docs/a.txt"), "utf8")).toBe("a");
    } finally {
      outside.remove();
      to.remove();
    }
  });

  it("the barrier catches a file rewritten within the same timestamp tick, size unchanged", async () => {
    const file = join(h.src.path, "same-stat.txt");
    const at = new Date(Date.now() - 500);
    writeFileSync(file, "AAAA");
    utimesSync(file, at, at);
    await h.agent.scan(SET);
    writeFileSync(file, "BBBB");
    utimesSync(file, at, at);
    const marker = await h.agent.insertMarker(SET, { fields: fields() });
    expect(marker.scan.changes).toBe(1);
    await h.agent.drain(SET);
    expect((await h.store.get("data/app/same-stat.txt"))?.body.toString()).toBe("BBBB");
  });
});
