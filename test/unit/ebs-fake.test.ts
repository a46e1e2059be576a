// The EBS direct API fake, driven by the real EBSClient: it must take what real
// EBS takes and refuse what real EBS refuses, or a passing ebs-snapshot test
// would prove nothing about the requests the product sends.

import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import {
  CompleteSnapshotCommand,
  EBSClient,
  GetSnapshotBlockCommand,
  ListChangedBlocksCommand,
  ListSnapshotBlocksCommand,
  paginateListSnapshotBlocks,
  PutSnapshotBlockCommand,
  StartSnapshotCommand,
  type StartSnapshotCommandInput,
} from "@aws-sdk/client-ebs";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { EBS_BLOCK_SIZE, startFakeEbs, type FakeEbs } from "../../lambdas/local/ebs-standin.ts";
import { tempDir } from "../support/tree.ts";

const KEY_ARN = "arn:aws:kms:us-east-1:000000000000:key/1234abcd-12ab-34cd-56ef-1234567890ab";

const digest = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest();
const checksumOf = (bytes: Uint8Array) => digest(bytes).toString("base64");
const newBlock = () => randomBytes(EBS_BLOCK_SIZE);

let fake: FakeEbs;
let ebs: EBSClient;

async function start(dir?: string): Promise<void> {
  fake = await startFakeEbs(dir !== undefined ? { dir } : {});
  ebs = new EBSClient({ region: "us-east-1", endpoint: fake.endpoint, credentials: { accessKeyId: "test", secretAccessKey: "test" }, maxAttempts: 1 });
}

async function stop(): Promise<void> {
  ebs.destroy();
  await fake.stop();
}

const startSnapshot = async (input: Partial<StartSnapshotCommandInput> = {}) =>
  String((await ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ...input }))).SnapshotId);

const put = (snapshotId: string, index: number, data: Buffer, checksum = checksumOf(data), length = data.length) =>
  ebs.send(new PutSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: index, BlockData: data, DataLength: length, Checksum: checksum, ChecksumAlgorithm: "SHA256" }));

/** Completes with the count and LINEAR aggregate of the given blocks, which are in index order. */
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

/** A completed snapshot holding the blocks given by index. */
async function completedSnapshot(blocks: Record<number, Buffer>, input: Partial<StartSnapshotCommandInput> = {}): Promise<string> {
  const id = await startSnapshot(input);
  const entries = Object.entries(blocks).map(([index, data]) => [Number(index), data] as const);
  for (const [index, data] of entries) await put(id, index, data);
  await complete(id, entries.sort((a, b) => a[0] - b[0]).map(([, data]) => data));
  return id;
}

/** A snapshot's content as a reader sees it: every listed block, fetched with its token. */
async function readAll(snapshotId: string): Promise<Map<number, Buffer>> {
  const out = new Map<number, Buffer>();
  for await (const page of paginateListSnapshotBlocks({ client: ebs, pageSize: 100 }, { SnapshotId: snapshotId })) {
    for (const { BlockIndex: index, BlockToken: token } of page.Blocks ?? []) {
      const got = await ebs.send(new GetSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: index, BlockToken: token }));
      const data = Buffer.from((await got.BlockData?.transformToByteArray()) ?? []);
      expect(got).toMatchObject({ DataLength: EBS_BLOCK_SIZE, Checksum: checksumOf(data), ChecksumAlgorithm: "SHA256" });
      out.set(Number(index), data);
    }
  }
  return out;
}

describe("the EBS direct API fake", () => {
  beforeEach(() => start());
  afterEach(() => stop());

  it("keeps a parent chain: reads resolve through it, changed blocks are only the rewritten ones", async () => {
    const [a, b, b2] = [newBlock(), newBlock(), newBlock()];
    const started = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1, Tags: [{ Key: "tidemark:set", Value: "vm" }], Description: "first", Timeout: 60 }));
    expect(started).toMatchObject({ Status: "pending", OwnerId: "000000000000", VolumeSize: 1, BlockSize: EBS_BLOCK_SIZE, Tags: [{ Key: "tidemark:set", Value: "vm" }], Description: "first", SseType: "none" });
    expect(started.StartTime).toBeInstanceOf(Date);
    const parent = String(started.SnapshotId);
    expect(parent).toMatch(/^snap-[0-9a-f]{17}$/);
    expect(await put(parent, 0, a)).toMatchObject({ Checksum: checksumOf(a), ChecksumAlgorithm: "SHA256" });
    await put(parent, 5, b);
    expect(await complete(parent, [a, b])).toMatchObject({ Status: "completed" });
    const child = await startSnapshot({ ParentSnapshotId: parent, VolumeSize: 2 });
    await put(child, 5, b2);
    await complete(child, [b2]);

    expect(fake.snapshots.get(child)).toMatchObject({ status: "completed", parentId: parent, volumeSize: 2, changedBlocksCount: 1 });
    expect([...(fake.snapshots.get(child)?.putBlocks.entries() ?? [])]).toEqual([[5, checksumOf(b2)]]);
    expect(await readAll(child)).toEqual(new Map([[0, a], [5, b2]]));
    expect(await readAll(parent)).toEqual(new Map([[0, a], [5, b]]));
    expect(fake.readBlock(child, 0)).toEqual(a);
    expect(fake.readBlock(child, 1)).toBeUndefined();

    const changed = await ebs.send(new ListChangedBlocksCommand({ FirstSnapshotId: parent, SecondSnapshotId: child }));
    expect(changed).toMatchObject({ VolumeSize: 2, BlockSize: EBS_BLOCK_SIZE });
    expect(changed.ChangedBlocks?.map((c) => c.BlockIndex)).toEqual([5]);
    // The first snapshot's token reads the block as it was there.
    const before = await ebs.send(new GetSnapshotBlockCommand({ SnapshotId: parent, BlockIndex: 5, BlockToken: changed.ChangedBlocks?.[0]?.FirstBlockToken }));
    expect(Buffer.from((await before.BlockData?.transformToByteArray()) ?? [])).toEqual(b);
    // Without a first snapshot, every block of the chain.
    const all = await ebs.send(new ListChangedBlocksCommand({ SecondSnapshotId: child }));
    expect(all.ChangedBlocks?.map((c) => [c.BlockIndex, c.FirstBlockToken === undefined])).toEqual([[0, true], [5, true]]);

    expect(fake.calls).toEqual(new Map([["StartSnapshot", 2], ["PutSnapshotBlock", 3], ["CompleteSnapshot", 2], ["ListSnapshotBlocks", 2], ["GetSnapshotBlock", 5], ["ListChangedBlocks", 2]]));
    expect(fake.refused).toEqual([]);
  });

  it("pages listings by maxResults, from startingBlockIndex or the page token", async () => {
    const data = newBlock();
    const id = await startSnapshot();
    for (let index = 0; index < 101; index++) await put(id, index, data);
    await complete(id, Array.from({ length: 101 }, () => data));
    const first = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: id, MaxResults: 100 }));
    expect(first.Blocks).toHaveLength(100);
    const second = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: id, MaxResults: 100, NextToken: first.NextToken }));
    expect(second.Blocks?.map((b) => b.BlockIndex)).toEqual([100]);
    expect(second.NextToken).toBeUndefined();
    expect((await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: id, StartingBlockIndex: 60 }))).Blocks).toHaveLength(41);
    const changed = await ebs.send(new ListChangedBlocksCommand({ SecondSnapshotId: id, MaxResults: 100, StartingBlockIndex: 1 }));
    expect([changed.ChangedBlocks?.length, changed.NextToken !== undefined]).toEqual([100, false]);
    expect(fake.refused).toEqual([]);

    // A page token of one listing does not continue another.
    await expect(ebs.send(new ListChangedBlocksCommand({ SecondSnapshotId: id, NextToken: first.NextToken }))).rejects.toMatchObject({ name: "ValidationException", Reason: "INVALID_PAGE_TOKEN" });
  });

  it("gives the same snapshot to the same client token and parameters, and refuses other parameters", async () => {
    const request = { ClientToken: "task-1", Description: "d", Tags: [{ Key: "a", Value: "1" }] };
    const first = await startSnapshot(request);
    expect(await startSnapshot(request)).toBe(first);
    expect(fake.snapshots.size).toBe(1);
    await expect(startSnapshot({ ...request, Description: "other" })).rejects.toMatchObject({ name: "ConflictException" });
    expect(fake.refused).toEqual([expect.stringMatching(/^StartSnapshot: ConflictException: client token task-1/)]);
    // Without one the SDK makes up a token per call: two snapshots.
    expect(await startSnapshot()).not.toBe(await startSnapshot());
  });

  it("encrypts a child as its parent, which it cannot override", async () => {
    const parent = await completedSnapshot({}, { Encrypted: true, KmsKeyArn: KEY_ARN });
    const child = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1, ParentSnapshotId: parent }));
    expect(child).toMatchObject({ KmsKeyArn: KEY_ARN, SseType: "sse-ebs" });
    expect(fake.snapshots.get(String(child.SnapshotId))).toMatchObject({ encrypted: true, kmsKeyArn: KEY_ARN });
    await expect(startSnapshot({ ParentSnapshotId: parent, Encrypted: true, KmsKeyArn: KEY_ARN })).rejects.toMatchObject({ name: "ValidationException" });
    expect(fake.refused).toEqual([expect.stringMatching(/ParentSnapshotId and Encrypted cannot be given together/)]);
  });

  const other = newBlock();
  it.each<[string, (pending: string) => Promise<unknown>, string, RegExp]>([
    ["a checksum that does not match", (id) => put(id, 0, newBlock(), checksumOf(other)), "ValidationException", /block 0: Checksum does not match the data/],
    ["a short block", (id) => put(id, 0, randomBytes(1000)), "ValidationException", /DataLength must be 524288, got 1000/],
    ["a body shorter than its DataLength", (id) => put(id, 0, randomBytes(1000), undefined, EBS_BLOCK_SIZE), "ValidationException", /the body is 1000 bytes, DataLength says 524288/],
    ["a block past the volume's end", (id) => put(id, 2048, newBlock()), "ValidationException", /BlockIndex of a 1 GiB volume must be 0 to 2047, got 2048/],
    ["a wrong count of changed blocks", async (id) => {
      await put(id, 1, other);
      return complete(id, [other], 2);
    }, "ValidationException", /ChangedBlocksCount 2 but 1 blocks were put/],
    ["a wrong aggregate checksum", async (id) => {
      await put(id, 1, newBlock());
      return complete(id, [other]);
    }, "ValidationException", /LINEAR aggregate checksum does not match/],
    ["a block into a completed snapshot", async (id) => {
      await complete(id, []);
      return put(id, 0, other);
    }, "ValidationException", /is completed: blocks go only into a pending snapshot/],
    ["an unknown parent", () => startSnapshot({ ParentSnapshotId: "snap-00000000000000000" }), "ResourceNotFoundException", /snapshot snap-00000000000000000 does not exist/],
    ["a parent still pending", (id) => startSnapshot({ ParentSnapshotId: id }), "ValidationException", /is pending, not completed/],
    ["a volume smaller than its parent's", async (id) => {
      await complete(id, []);
      const bigger = await completedSnapshot({}, { VolumeSize: 2 });
      return startSnapshot({ ParentSnapshotId: bigger, VolumeSize: 1 });
    }, "ValidationException", /VolumeSize 1 is smaller than the parent's 2/],
    ["a volume of no size", () => startSnapshot({ VolumeSize: 0 }), "ValidationException", /VolumeSize \(GiB\) must be 1 to 65536, got 0/],
    ["a Timeout out of range", () => startSnapshot({ Timeout: 5 }), "ValidationException", /Timeout \(minutes\) must be 10 to 4320, got 5/],
    ["a KMS key without Encrypted", () => startSnapshot({ KmsKeyArn: KEY_ARN }), "ValidationException", /KmsKeyArn needs Encrypted true/],
    ["a reserved tag key", () => startSnapshot({ Tags: [{ Key: "aws:x", Value: "" }] }), "ValidationException", /tag keys starting with aws: are reserved/],
    ["a listing of a pending snapshot", (id) => ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: id })), "ValidationException", /is pending: only a completed snapshot can be read/],
    ["a page size under 100", async (id) => {
      await complete(id, []);
      return ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: id, MaxResults: 50 }));
    }, "ValidationException", /maxResults must be 100 to 10000, got 50/],
    ["a block token no listing handed out", async (id) => {
      await put(id, 3, other);
      await complete(id, [other]);
      return ebs.send(new GetSnapshotBlockCommand({ SnapshotId: id, BlockIndex: 3, BlockToken: "Zm9yZ2Vk" }));
    }, "ValidationException", /block 3 of snap-[0-9a-f]+: the block token is not one a listing handed out/],
    ["changed blocks between unrelated snapshots", async (id) => {
      await complete(id, []);
      return ebs.send(new ListChangedBlocksCommand({ FirstSnapshotId: id, SecondSnapshotId: await completedSnapshot({}) }));
    }, "ValidationException", /share no lineage/],
  ])("refuses %s, and records why", async (_what, request, name, why) => {
    const id = await startSnapshot();
    await expect(request(id)).rejects.toMatchObject({ name });
    expect(fake.refused).toEqual([expect.stringMatching(why)]);
  });

  it("refuses unsigned requests and paths that are no API", async () => {
    const unsigned = await fetch(`${fake.endpoint}/snapshots`, { method: "POST", body: JSON.stringify({ VolumeSize: 1 }) });
    expect([unsigned.status, unsigned.headers.get("x-amzn-errortype")]).toEqual([403, "AccessDeniedException"]);
    const nowhere = await fetch(`${fake.endpoint}/volumes`, { headers: { authorization: "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/ebs/aws4_request, SignedHeaders=host, Signature=0" } });
    expect(nowhere.status).toBe(404);
    expect(fake.refused).toEqual([expect.stringMatching(/^StartSnapshot: AccessDeniedException \(UNAUTHORIZED_ACCOUNT\)/), expect.stringMatching(/^GET \/volumes: UnknownOperationException/)]);
  });

  it("cancels a pending snapshot that had no block put for its Timeout", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      const id = await startSnapshot({ Timeout: 10 });
      await put(id, 0, other);
      // The Timeout counts from the last block put.
      vi.setSystemTime(Date.now() + 9 * 60_000);
      await put(id, 1, other);
      vi.setSystemTime(Date.now() + 11 * 60_000);
      await expect(complete(id, [other, other])).rejects.toMatchObject({ name: "ValidationException" });
      expect(fake.snapshots.get(id)?.status).toBe("error");
      expect(fake.refused).toEqual([expect.stringMatching(/is error: blocks go only into a pending snapshot/)]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("answers 500 when beforePut throws, without counting it a refusal", async () => {
    const id = await startSnapshot();
    fake.beforePut = () => {
      throw new Error("injected");
    };
    await expect(put(id, 0, other)).rejects.toMatchObject({ name: "InternalServerException", $fault: "server" });
    fake.beforePut = undefined;
    expect(fake.snapshots.get(id)?.putBlocks.size).toBe(0);
    expect(fake.refused).toEqual([]);
  });
});

describe("the EBS direct API fake with a put hung in beforePut", () => {
  it("still stops", async () => {
    await start();
    const id = await startSnapshot();
    fake.beforePut = () => new Promise<void>(() => undefined);
    const hung = put(id, 0, newBlock()).then(
      () => "answered",
      () => "cut",
    );
    await vi.waitFor(() => expect(fake.calls.get("PutSnapshotBlock")).toBe(1), { timeout: 30_000 });
    await stop();
    expect(await hung).toBe("cut");
  });
});

describe("the EBS direct API fake with a folder", () => {
  const dir = tempDir("tidemark-ebs-");
  afterEach(() => dir.remove());

  it("keeps snapshots, pending ones too, across a restart", async () => {
    const [a, b, b2, c] = [newBlock(), newBlock(), newBlock(), newBlock()];
    await start(dir.path);
    const parent = await completedSnapshot({ 3: a, 7: b });
    const child = await startSnapshot({ ParentSnapshotId: parent, ClientToken: "task-2" });
    await put(child, 7, b2);
    await stop();

    await start(dir.path);
    try {
      expect(fake.snapshots.get(parent)).toMatchObject({ status: "completed", changedBlocksCount: 2 });
      expect(fake.readBlock(parent, 7)).toEqual(b);
      expect(existsSync(join(dir.path, `${parent}.puts`))).toBe(false);
      expect(fake.snapshots.get(child)).toMatchObject({ status: "pending", parentId: parent, putBlocks: new Map([[7, checksumOf(b2)]]) });
      // The same client token still names it, and it goes on where it was.
      expect(await startSnapshot({ ParentSnapshotId: parent, ClientToken: "task-2" })).toBe(child);
      await put(child, 9, c);
      await complete(child, [b2, c]);
      expect(await readAll(child)).toEqual(new Map([[3, a], [7, b2], [9, c]]));
      expect(fake.refused).toEqual([]);
    } finally {
      await stop();
    }
  });
});
