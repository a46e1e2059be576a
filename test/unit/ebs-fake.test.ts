// The EBS direct API fake checks what real EBS checks of a writer: without
// this, a passing ebs-snapshot test would prove nothing about the requests.

import { createHash, randomBytes } from "node:crypto";
import { CompleteSnapshotCommand, EBSClient, GetSnapshotBlockCommand, ListChangedBlocksCommand, ListSnapshotBlocksCommand, PutSnapshotBlockCommand, StartSnapshotCommand } from "@aws-sdk/client-ebs";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { clientConfig } from "../../lambdas/aws-clients.ts";
import { EBS_BLOCK_SIZE, startFakeEbs, type FakeEbs } from "../support/ebs-fake.ts";
import { tempDir } from "../support/tree.ts";

const digest = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest();

let fake: FakeEbs;
let ebs: EBSClient;

async function start(dir?: string): Promise<void> {
  fake = await startFakeEbs(dir ? { dir } : {});
  ebs = new EBSClient({ ...clientConfig({ region: "us-east-1", endpoint: fake.endpoint }), maxAttempts: 1 });
}

async function stop(): Promise<void> {
  ebs.destroy();
  await fake.stop();
}

const put = (snapshotId: string, index: number, data: Buffer, checksum = digest(data).toString("base64")) =>
  ebs.send(new PutSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: index, BlockData: data, DataLength: data.length, Checksum: checksum, ChecksumAlgorithm: "SHA256" }));

/** Completes with the right count and LINEAR aggregate of the given blocks (in index order). */
const complete = (snapshotId: string, blocks: Buffer[], count = blocks.length) =>
  ebs.send(
    new CompleteSnapshotCommand({
      SnapshotId: snapshotId,
      ChangedBlocksCount: count,
      Checksum: digest(Buffer.concat(blocks.map(digest))).toString("base64"),
      ChecksumAlgorithm: "SHA256",
      ChecksumAggregationMethod: "LINEAR",
    }),
  );

const startSnapshot = async (extra: { ParentSnapshotId?: string; ClientToken?: string } = {}) =>
  String((await ebs.send(new StartSnapshotCommand({ VolumeSize: 1, Tags: [{ Key: "tidemark:set", Value: "vm" }], ...extra }))).SnapshotId);

describe("the EBS direct API fake", () => {
  beforeEach(() => start());
  afterEach(() => stop());

  it("keeps a parent chain: listings and reads resolve blocks through it, changed blocks are only the rewritten ones", async () => {
    const a = randomBytes(EBS_BLOCK_SIZE);
    const b = randomBytes(EBS_BLOCK_SIZE);
    const parent = await startSnapshot();
    expect(parent).toMatch(/^snap-[0-9a-f]{17}$/);
    await put(parent, 0, a);
    await put(parent, 5, b);
    await complete(parent, [a, b]);
    const b2 = randomBytes(EBS_BLOCK_SIZE);
    const child = await startSnapshot({ ParentSnapshotId: parent });
    await put(child, 5, b2);
    await complete(child, [b2]);

    const listed = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: child }));
    expect(listed).toMatchObject({ VolumeSize: 1, BlockSize: EBS_BLOCK_SIZE });
    expect(listed.Blocks?.map((x) => x.BlockIndex)).toEqual([0, 5]);
    for (const block of listed.Blocks ?? []) {
      const got = await ebs.send(new GetSnapshotBlockCommand({ SnapshotId: child, BlockIndex: block.BlockIndex, BlockToken: block.BlockToken }));
      const data = Buffer.from((await got.BlockData?.transformToByteArray()) ?? []);
      expect(data.equals(block.BlockIndex === 0 ? a : b2)).toBe(true);
      expect(got.Checksum).toBe(digest(data).toString("base64"));
    }
    const changed = await ebs.send(new ListChangedBlocksCommand({ FirstSnapshotId: parent, SecondSnapshotId: child }));
    expect(changed.ChangedBlocks?.map((x) => x.BlockIndex)).toEqual([5]);
    expect(fake.refused).toEqual([]);
  });

  it("gives the same snapshot to the same client token", async () => {
    const first = await startSnapshot({ ClientToken: "task-1" });
    expect(await startSnapshot({ ClientToken: "task-1" })).toBe(first);
    expect(await startSnapshot({ ClientToken: "task-2" })).not.toBe(first);
  });

  it.each([
    ["a checksum that does not match", async (id: string) => put(id, 0, randomBytes(EBS_BLOCK_SIZE), digest(Buffer.from("other")).toString("base64")), /Checksum does not match/],
    ["a short block", async (id: string) => put(id, 0, randomBytes(1000)), /a block is 524288 bytes/],
    ["a block past the volume's end", async (id: string) => put(id, 2048, randomBytes(EBS_BLOCK_SIZE)), /outside a 1 GiB volume/],
    ["a wrong count of changed blocks", async (id: string) => {
      const data = randomBytes(EBS_BLOCK_SIZE);
      await put(id, 1, data);
      return complete(id, [data], 2);
    }, /ChangedBlocksCount 2 but 1 blocks were put/],
    ["a wrong aggregate checksum", async (id: string) => {
      await put(id, 1, randomBytes(EBS_BLOCK_SIZE));
      return complete(id, [randomBytes(EBS_BLOCK_SIZE)]);
    }, /LINEAR aggregate checksum does not match/],
    ["an unknown parent", async () => startSnapshot({ ParentSnapshotId: "snap-00000000000000000" }), /does not exist/],
    ["a parent still pending", async (id: string) => startSnapshot({ ParentSnapshotId: id }), /is pending, not completed/],
    ["a block into a completed snapshot", async (id: string) => {
      await complete(id, []);
      return put(id, 0, randomBytes(EBS_BLOCK_SIZE));
    }, /blocks go only into a pending snapshot/],
  ])("refuses %s, and records why", async (_what, request, reason) => {
    const id = await startSnapshot();
    await expect(request(id)).rejects.toThrow();
    expect(fake.refused.join("\n")).toMatch(reason);
  });
});

describe("the EBS direct API fake with a folder", () => {
  const dir = tempDir("tidemark-ebs-");
  afterEach(() => dir.remove());

  it("keeps completed snapshots across a restart", async () => {
    await start(dir.path);
    const data = randomBytes(EBS_BLOCK_SIZE);
    const id = await startSnapshot();
    await put(id, 7, data);
    await complete(id, [data]);
    await stop();
    await start(dir.path);
    try {
      expect(fake.snapshots.get(id)?.status).toBe("completed");
      expect(fake.readBlock(id, 7)?.equals(data)).toBe(true);
    } finally {
      await stop();
    }
  });
});
