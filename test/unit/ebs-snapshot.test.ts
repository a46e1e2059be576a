// The ebs-snapshot action against the protocol-level fake of the EBS direct
// APIs: incremental snapshots with the previous one as parent, blocks that
// became zeros written as zeros, an upload cut by the invocation's deadline
// that resumes in the next one without redoing a block, an applier killed
// mid-upload whose successor finishes the same snapshot, and restore from EBS.

import { createHash, randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { EBSClient } from "@aws-sdk/client-ebs";
import type { Context, SQSRecord } from "aws-lambda";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { restoreEbsSnapshot } from "../../agent/restore-volume.ts";
import { readTaskResult } from "../../lambdas/target/index.ts";
import { BLOCK_SIZE } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import type { TaskSettings } from "../../lambdas/applier/markers.ts";
import { clientConfig } from "../../lambdas/aws-clients.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { VolumeMap } from "../../lambdas/volumes/block-map.ts";
import { EbsSnapshotAction } from "../../lambdas/volumes/ebs-snapshot.ts";
import { startFakeEbs, type FakeEbs } from "../../lambdas/local/ebs-standin.ts";
import { readHead } from "../support/tree.ts";
import { VOLUME_SET as SET, volumeHarness, type VolumeHarness } from "../support/volume-harness.ts";
import { signedIncoming, signedSqsAttributes } from "../support/messages.ts";
import type { SigningKey } from "../../contract/signing.ts";
const BLOCKS = 40;

let ebs: FakeEbs;
let client: EBSClient;

function ebsTasks(store: MemoryStore): TaskSettings {
  return { actions: { "ebs-snapshot": new EbsSnapshotAction(client, store) } };
}

function randomImage(blocks: number): Buffer {
  const image = randomBytes(blocks * BLOCK_SIZE);
  // A few blocks of zeros, which an EBS snapshot without a parent need not hold.
  for (const index of [3, 4, 17]) image.fill(0, index * BLOCK_SIZE, (index + 1) * BLOCK_SIZE);
  return image;
}

/** What the fake holds for a snapshot: the image's first `bytes`, block by block through the parent chain. */
function readBack(snapshotId: string, bytes: number): Buffer {
  const out = Buffer.alloc(bytes);
  for (let index = 0; index * BLOCK_SIZE < bytes; index++) ebs.readBlock(snapshotId, index)?.copy(out, index * BLOCK_SIZE, 0, Math.min(BLOCK_SIZE, bytes - index * BLOCK_SIZE));
  return out;
}

function overwriteBlock(h: VolumeHarness, index: number): void {
  const fd = openSync(h.image, "r+");
  writeSync(fd, randomBytes(BLOCK_SIZE), 0, BLOCK_SIZE, index * BLOCK_SIZE);
  closeSync(fd);
}

const putCount = () => ebs.calls.get("PutSnapshotBlock") ?? 0;

beforeEach(async () => {
  ebs = await startFakeEbs();
  client = new EBSClient(clientConfig({ region: "us-east-1", endpoint: ebs.endpoint }));
});
afterEach(async () => {
  client.destroy();
  await ebs.stop();
});

describe("ebs-snapshot markers", () => {
  let h: VolumeHarness;
  let store: MemoryStore;

  beforeEach(async () => {
    store = new MemoryStore();
    h = volumeHarness(randomImage(BLOCKS), ebsTasks(store), store);
    await h.agent.start();
    await h.agent.drain(SET);
  });
  afterEach(() => h.close());

  it("cuts a full snapshot, then incremental ones with the previous as parent", async () => {
    const first = await h.marker("ebs-snapshot", "first");
    expect(first.status).toBe("succeeded");
    const firstId = String(first.outputs.ebsSnapshotId);
    expect(first.outputs).toMatchObject({ changedBlocks: BLOCKS - 3, volumeSizeGiB: 1 });
    expect(ebs.snapshots.get(firstId)).toMatchObject({ status: "completed", volumeSize: 1, tags: { "tidemark:set": SET, "tidemark:task": first.id, "tidemark:label": "first" } });
    expect(readBack(firstId, BLOCKS * BLOCK_SIZE).equals(readFileSync(h.image))).toBe(true);

    // One block rewritten, one that held data now zeros, one zero block now data.
    const image = openSync(h.image, "r+");
    writeSync(image, randomBytes(1000), 0, 1000, 9 * BLOCK_SIZE + 5);
    writeSync(image, Buffer.alloc(BLOCK_SIZE), 0, BLOCK_SIZE, 20 * BLOCK_SIZE);
    writeSync(image, randomBytes(10), 0, 10, 4 * BLOCK_SIZE);
    closeSync(image);
    const second = await h.marker("ebs-snapshot", "second");
    const secondId = String(second.outputs.ebsSnapshotId);
    expect(second.outputs).toMatchObject({ changedBlocks: 3, parentSnapshotId: firstId });
    expect(ebs.snapshots.get(secondId)?.parentId).toBe(firstId);
    expect([...(ebs.snapshots.get(secondId)?.putBlocks.keys() ?? [])].sort((a, b) => a - b)).toEqual([4, 9, 20]);
    expect(readBack(secondId, BLOCKS * BLOCK_SIZE).equals(readFileSync(h.image))).toBe(true);
    expect(ebs.refused).toEqual([]);

    // Both restore from EBS; the first still holds the state at its marker.
    const to = join(h.dir.path, "from-ebs.img");
    const restored = await restoreEbsSnapshot(client, secondId, to);
    expect(restored).toMatchObject({ source: "ebs", size: 1024 ** 3 });
    expect((await readHead(to, BLOCKS * BLOCK_SIZE)).head.equals(readFileSync(h.image))).toBe(true);
  });

  it("records a failed action when the EBS APIs refuse, and the next marker starts from the last completed snapshot", async () => {
    const first = await h.marker("ebs-snapshot");
    overwriteBlock(h, 2);
    ebs.beforePut = () => {
      throw new Error("injected failure");
    };
    const failed = await h.marker("ebs-snapshot");
    expect(failed.status).toBe("failed");
    ebs.beforePut = undefined;
    const third = await h.marker("ebs-snapshot");
    expect(third.status).toBe("succeeded");
    expect(third.outputs).toMatchObject({ parentSnapshotId: first.outputs.ebsSnapshotId, changedBlocks: 1 });
    expect(readBack(String(third.outputs.ebsSnapshotId), BLOCKS * BLOCK_SIZE).equals(readFileSync(h.image))).toBe(true);
  });

  it("encrypts the first snapshot of a chain with the configured key, and lets the next ones inherit it", async () => {
    const key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const encrypted = new MemoryStore();
    const e = volumeHarness(randomImage(20), { actions: { "ebs-snapshot": new EbsSnapshotAction(client, encrypted, { kmsKeyArn: key }) } }, encrypted);
    try {
      await e.agent.start();
      const first = await e.marker("ebs-snapshot");
      overwriteBlock(e, 1);
      const second = await e.marker("ebs-snapshot");
      expect([first.status, second.status]).toEqual(["succeeded", "succeeded"]);
      expect(ebs.refused).toEqual([]);
      for (const outcome of [first, second]) expect(ebs.snapshots.get(String(outcome.outputs.ebsSnapshotId))).toMatchObject({ encrypted: true, kmsKeyArn: key });
    } finally {
      await e.close();
    }
  });

  it("refuses ebs-snapshot on a file set with a clear failure", async () => {
    const { agentHarness } = await import("../support/harness.ts");
    const target = new MemoryStore();
    const files = agentHarness("files", {}, { tasks: ebsTasks(target), store: target });
    try {
      const { writeFileSync } = await import("node:fs");
      writeFileSync(join(files.src.path, "a.txt"), "a");
      await files.agent.start();
      const queued = await files.agent.insertMarker("files", { fields: { action: "ebs-snapshot", timeoutSeconds: 60 } });
      await files.agent.drain("files");
      const result = await readTaskResult(files.store, "files", queued.id);
      expect(result?.error).toMatch(/is a file set: ebs-snapshot needs a volume set/);
      expect(result?.status).toBe("failed");
    } finally {
      await files.close();
    }
  });
});

function sqsRecord(id: string, body: string, key: SigningKey): SQSRecord {
  return {
    messageId: id,
    receiptHandle: `rh-${id}`,
    body,
    attributes: { ApproximateReceiveCount: "1", SentTimestamp: String(Date.now()), SenderId: "x", ApproximateFirstReceiveTimestamp: String(Date.now()), MessageGroupId: SET },
    messageAttributes: signedSqsAttributes(SET, body, key),
    md5OfBody: "",
    eventSource: "aws:sqs",
    eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
    awsRegion: "us-east-1",
  };
}

function lambdaContext(remainingMs: () => number): Context {
  return { getRemainingTimeInMillis: remainingMs } as Context;
}

describe("an EBS snapshot larger than one invocation", () => {
  let h: VolumeHarness;
  let store: MemoryStore;
  /** The messages the agent sent, in order: the tests hand them to the handler themselves. */
  let records: SQSRecord[];
  let taskId: string;
  /** The image as it was at the marker. */
  let atMarker: Buffer;

  beforeEach(async () => {
    store = new MemoryStore();
    h = volumeHarness(randomImage(BLOCKS), ebsTasks(store), store);
    await h.agent.start();
    await h.agent.drain(SET);
    // From here on the queue "accepts" messages without applying them: the test plays the event source mapping.
    h.transport.lose = Number.MAX_SAFE_INTEGER;
    const before = h.transport.bodies.length;
    taskId = (await h.agent.insertMarker(SET, { fields: { action: "ebs-snapshot", timeoutSeconds: 60 } })).id;
    atMarker = readFileSync(h.image);
    overwriteBlock(h, 0);
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    records = h.transport.bodies.slice(before).map((body, i) => sqsRecord(`m${i}`, body, h.transport.key));
    expect(records.length).toBeGreaterThanOrEqual(1);
  });
  afterEach(() => h.close());

  /** The snapshot the marker cut, checked complete and equal to the image at the marker. */
  const expectComplete = async () => {
    const result = await readTaskResult(store, SET, taskId);
    expect(result).toMatchObject({ status: "succeeded", outputs: { changedBlocks: BLOCKS - 3 } });
    const id = String(result?.outputs.ebsSnapshotId);
    expect([...ebs.snapshots.keys()]).toEqual([id]);
    expect(ebs.snapshots.get(id)?.status).toBe("completed");
    expect(readBack(id, BLOCKS * BLOCK_SIZE).equals(atMarker)).toBe(true);
    expect(ebs.refused).toEqual([]);
  };

  it("stops near the deadline, comes back at once, and finishes the same snapshot without uploading a block twice", async () => {
    // A round of 32 blocks, 8 at a time, takes at least 4 × 150 ms: the deadline passes during the first one.
    ebs.beforePut = () => new Promise((resolve) => setTimeout(resolve, 150));
    const released: string[] = [];
    const handler = createHandler(new Applier({ store, log: () => {}, tasks: ebsTasks(store) }), () => {}, undefined, async (record) => {
      released.push(record.messageId);
    });
    // 10 s of the invocation are kept for writing results: 500 ms are left for the snapshot and the upload.
    const deadline = Date.now() + 10_500;
    const first = await handler({ Records: records }, lambdaContext(() => deadline - Date.now()));
    const ids = records.map((r) => r.messageId);
    expect(first.batchItemFailures.map((f) => f.itemIdentifier)).toEqual(ids.slice(ids.length - first.batchItemFailures.length));
    expect(released).toEqual(first.batchItemFailures.map((f) => f.itemIdentifier));
    const uploaded = putCount();
    expect(uploaded).toBeGreaterThan(0);
    expect(uploaded).toBeLessThan(BLOCKS - 3);
    expect(await readTaskResult(store, SET, taskId)).toMatchObject({ status: "running", outputs: { uploadedBlocks: uploaded } });
    const checkpoint = (await readSetStatus(store, SET)).lastSeq;

    ebs.beforePut = undefined;
    const retry = records.filter((r) => released.includes(r.messageId));
    const second = await handler({ Records: retry }, lambdaContext(() => 600_000));
    expect(second.batchItemFailures).toEqual([]);
    expect(ebs.calls.get("StartSnapshot")).toBe(1);
    expect(putCount()).toBe(BLOCKS - 3);
    await expectComplete();
    // What came after the marker was applied once the snapshot was complete.
    expect((await readSetStatus(store, SET)).lastSeq).toBeGreaterThan(checkpoint);
    // ...and it is the block written after the marker that the live map now names.
    const live = (await VolumeMap.open(store, SET)).entries();
    expect((await live).find((e) => e.index === 0)?.sha256).toBe(createHash("sha256").update(readFileSync(h.image).subarray(0, BLOCK_SIZE)).digest("hex"));
  });

  it("finishes the same snapshot, with the right content, after the applier was killed mid-upload", async () => {
    // The dead applier's own client: once its Lambda is frozen, nothing it sends goes out any more.
    const deadClient = new EBSClient(clientConfig({ region: "us-east-1", endpoint: ebs.endpoint }));
    let frozen = false;
    deadClient.middlewareStack.add((next) => async (args) => (frozen ? new Promise<never>(() => undefined) : next(args)), { step: "initialize", name: "frozenLambda" });
    ebs.beforePut = () => {
      if (putCount() >= 10) frozen = true;
    };
    const marker = records.find((r) => r.body.includes('"op":"task"'));
    if (!marker) throw new Error("no message holds the marker");
    const dead = new Applier({ store, log: () => {}, tasks: { actions: { "ebs-snapshot": new EbsSnapshotAction(deadClient, store) } } });
    void dead.applyMessage(signedIncoming(marker.messageId, SET, marker.body, h.transport.key)).catch(() => undefined);
    const until = Date.now() + 10_000;
    while (!frozen && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(frozen).toBe(true);
    // Requests already on the wire when it froze land; then the invocation's time is up.
    await new Promise((resolve) => setTimeout(resolve, 200));
    ebs.beforePut = undefined;

    const successor = new Applier({ store, log: () => {}, tasks: ebsTasks(store) });
    for (const record of records) await successor.applyMessage(signedIncoming(record.messageId, SET, record.body, h.transport.key));
    await expectComplete();
    expect(await readTaskResult(store, SET, taskId)).toMatchObject({ attempts: 2 });
    deadClient.destroy();
  });
});
