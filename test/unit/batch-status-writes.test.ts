// When a batch ends (Applier.finishBatch), each set's status write may wait
// only while nothing but its progress changed since the batch read it: the
// comparison is with the settled fields the batch started from, not with the
// status as it is at the end (which always equals itself), or with what a
// message of the batch wrote, when one did.

import { expect, it } from "vitest";
import { statusKey } from "../../contract/layout.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { BatchMemory } from "../../lambdas/applier/batch-memory.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";

const SET = "docs";
const now = () => new Date(1_800_000_000_000);

async function applyBatch(applier: Applier, first: number, change?: (batch: BatchMemory) => void): Promise<void> {
  const batch = new BatchMemory();
  const body = messageBody(SET, [putRecord(first, `f${first}`, `content ${first}`)]);
  expect((await applier.applyMessage(signedIncoming(`m${first}`, SET, body), undefined, batch)).kind).toBe("applied");
  change?.(batch);
  expect(await applier.finishBatch(batch)).toEqual(new Set());
}

it("a batch that only moved the set's progress leaves its status write for later; one whose settled fields changed since it read them writes it", async () => {
  const store = new MemoryStore();
  const applier = new Applier({ store, log: () => {}, now });
  await applyBatch(applier, 1);
  const written = (await store.get(statusKey(SET)))?.body.toString();
  expect(written).toBeDefined();

  // Progress only: the segment carries the checkpoint, the status object stays as it was.
  await applyBatch(applier, 2);
  expect((await store.get(statusKey(SET)))?.body.toString()).toBe(written);
  expect((await readSetStatus(store, SET)).lastSeq).toBe(2);

  // A settled field changed with no write of its own (set by hand here: the applier's messages write what they
  // change themselves today, so this guards the batch's end against any that one day does not).
  await applyBatch(applier, 3, (batch) => {
    const status = batch.held(SET);
    if (!status) throw new Error("test: the batch holds no status of the set");
    status.reason = "changed after the message";
  });
  const status = JSON.parse((await store.get(statusKey(SET)))?.body.toString() ?? "{}") as { lastSeq?: number; reason?: string };
  expect(status).toMatchObject({ lastSeq: 3, reason: "changed after the message" });
});

it("a batch whose message wrote the status with its settled change does not write it again at its end", async () => {
  const store = new MemoryStore();
  const statusPuts: string[] = [];
  const put = store.put.bind(store);
  store.put = (key, body, meta) => {
    if (key === statusKey(SET)) statusPuts.push(new TextDecoder().decode(body));
    return put(key, body, meta);
  };
  const applier = new Applier({ store, log: () => {}, now });
  await applyBatch(applier, 1);
  statusPuts.length = 0;
  const batch = new BatchMemory();
  // A folder's change waits for the folder writes (folder-writes.ts): folderWritesFrom, a settled field, is written with the message.
  const body = messageBody(SET, [{ seq: 2, op: "mkdir", path: "d", mode: 0o755, mtimeNs: "1700000000000000000" }, putRecord(3, "d/x", "x")]);
  expect((await applier.applyMessage(signedIncoming("m2", SET, body), undefined, batch)).kind).toBe("applied");
  expect(statusPuts.map((text) => JSON.parse(text) as unknown)).toEqual([expect.objectContaining({ lastSeq: 3, folderWritesFrom: 1 })]);
  expect(await applier.finishBatch(batch)).toEqual(new Set());
  expect(statusPuts).toHaveLength(1);
  expect(await readSetStatus(store, SET)).toMatchObject({ lastSeq: 3, folderWritesFrom: 1 });
});
