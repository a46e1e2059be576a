// Poison records: a record the target refuses for good leaves the stream
// after a few tries; the rest of the set keeps flowing, the target keeps the
// path's last good version, and the path is tracked as not replicated until a
// later change of it is delivered.

import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import type { Logger } from "../../agent/log.ts";
import { skipRefusedRecord } from "../../agent/poison.ts";
import { AwsTransport } from "../../agent/transport/aws.ts";
import { RetryingTransport } from "../../agent/transport/retry.ts";
import { DeliveryRefusedError, type StagedPayload, type Transport } from "../../agent/transport/transport.ts";
import { dataKey } from "../../contract/layout.ts";
import { makeS3Client, makeSqsClient } from "../../lambdas/aws-clients.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "docs";

function awsError(name: string, status: number): Error {
  return Object.assign(new Error(`${name}: refused`), { name, $metadata: { httpStatusCode: status } });
}

/** A store that refuses staged payloads larger than `maxStaged` and messages `refuseMessage` picks, as S3 or SQS would (a 400). */
class RefusingTransport implements Transport {
  readonly #inner: Transport;
  maxStaged = Number.POSITIVE_INFINITY;
  refuseMessage: ((body: string) => boolean) | undefined;
  refusals = 0;

  constructor(inner: Transport) {
    this.#inner = inner;
  }

  async stage(payload: StagedPayload): Promise<void> {
    if (payload.size > this.maxStaged) {
      this.refusals += 1;
      throw awsError("EntityTooLarge", 400);
    }
    await this.#inner.stage(payload);
  }

  async send(set: string, deduplicationId: string, body: string): Promise<void> {
    if (this.refuseMessage?.(body)) {
      this.refusals += 1;
      throw awsError("InvalidMessageContents", 400);
    }
    await this.#inner.send(set, deduplicationId, body);
  }
}

let h: Harness;
let refusing: RefusingTransport;
const logged: string[] = [];
const log: Logger = { debug() {}, info() {}, warn() {}, error: (msg) => logged.push(msg) };

beforeEach(() => {
  logged.length = 0;
  h = agentHarness(SET, { log });
  refusing = new RefusingTransport(h.transport);
  h.restart({ transport: new RetryingTransport(refusing, { baseDelayMs: 1, maxDelayMs: 2 }) });
});

afterEach(() => h.close());

const big = () => randomBytes(600 * 1024);
const write = (name: string, content: string | Buffer) => writeFileSync(join(h.src.path, name), content);

async function sync(): Promise<void> {
  await h.agent.scan(SET);
  await h.agent.drain(SET);
}

it("skips a record the store refuses, and the rest of the set keeps flowing behind it", async () => {
  refusing.maxStaged = 500 * 1024;
  write("a.txt", "before");
  write("big.bin", big());
  write("z.txt", "after");
  await sync();

  // Tried a few times (a blip is not a refusal), then taken out of the stream.
  expect(refusing.refusals).toBe(3);
  const target = await pictureOfTarget(h.store, SET);
  expect(Object.keys(target).sort()).toEqual(["a.txt", "z.txt"]);
  expect(h.journal.skipped(SET)).toEqual([expect.objectContaining({ path: "big.bin", reason: expect.stringContaining("EntityTooLarge") })]);
  expect(logged).toContain("not replicated: the target refused a record for good; it keeps the last good version");
  // No gap on the target: the skip record held the refused record's seq.
  const status = await readSetStatus(h.store, SET);
  expect(status.state).toBe("in-sync");
  expect(status.lastSeq).toBe(h.journal.sets.counters(SET).sentSeq);
  expect(h.journal.sets.counters(SET)).toMatchObject({ backlogRecords: 0, backlogBytes: 0 });

  // Later changes keep arriving.
  write("later.txt", "written after the refusal");
  await sync();
  expect(await pictureOfTarget(h.store, SET)).toHaveProperty("later.txt");

  // The file shrinks: it is sent, and no longer skipped.
  write("big.bin", "small now");
  await sync();
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  expect(h.journal.skipped(SET)).toEqual([]);
});

it("keeps the last good version on the target, retries on later scans, and a delete resolves the path", async () => {
  // Another file: deleting big.bin leaves the root holding something (an emptied root is held, root-hold.test.ts).
  write("keep.txt", "kept");
  write("big.bin", "the last good version");
  await sync();
  refusing.maxStaged = 500 * 1024;
  write("big.bin", big());
  await sync();
  expect((await h.store.get(dataKey(SET, "big.bin")))?.body.toString()).toBe("the last good version");
  expect(h.journal.skipped(SET).map((s) => s.path)).toEqual(["big.bin"]);

  // A later scan journals it again (the index no longer claims it was sent) and tries again.
  refusing.refusals = 0;
  await sync();
  expect(refusing.refusals).toBe(3);
  expect(h.journal.skipped(SET).map((s) => s.path)).toEqual(["big.bin"]);

  rmSync(join(h.src.path, "big.bin"));
  await sync();
  expect(await h.store.get(dataKey(SET, "big.bin"))).toBeUndefined();
  expect(h.journal.skipped(SET)).toEqual([]);
});

it("delivers a skipped path once the store takes it, on the next scan", async () => {
  refusing.maxStaged = 500 * 1024;
  write("big.bin", big());
  await sync();
  expect(h.journal.skipped(SET)).toHaveLength(1);
  refusing.maxStaged = Number.POSITIVE_INFINITY;
  await sync();
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  expect(h.journal.skipped(SET)).toEqual([]);
});

it("does not apply deltas built on a refused version: they are skipped, and the file is sent whole later", async () => {
  const content = randomBytes(3 * 512 * 1024);
  write("db.bin", content);
  await sync();
  // Two changes journaled before either is sent: the second is a delta against the first.
  const refused = h.journal.sets.counters(SET).nextSeq;
  content.fill(1, 0, 512 * 1024);
  write("db.bin", content);
  await h.agent.scan(SET);
  content.fill(2, 512 * 1024, 1024 * 1024);
  write("db.bin", content);
  await h.agent.scan(SET);
  const records = (body: string) => (JSON.parse(body) as { records: { seq: number; op: string; delta?: unknown }[] }).records;
  // Only the first delta is refused; the second would apply, on a base the target never got.
  refusing.refuseMessage = (body) => records(body).some((r) => r.seq === refused && r.op === "put");
  await h.agent.drain(SET);
  expect(h.transport.bodies.flatMap(records).filter((r) => r.op === "put" && r.delta !== undefined)).toEqual([]);
  expect((await readSetStatus(h.store, SET)).state).toBe("in-sync");
  expect(h.journal.skipped(SET).map((s) => s.path)).toEqual(["db.bin"]);
  refusing.refuseMessage = undefined;
  await sync();
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  expect(h.journal.skipped(SET)).toEqual([]);
  expect((await readSetStatus(h.store, SET)).state).toBe("in-sync");
});

it("finds the refused record of a refused message by sending its records one a message", async () => {
  write("a.txt", "first");
  write("bad.txt", "the queue will not take this");
  write("c.txt", "third");
  refusing.refuseMessage = (body) => body.includes("bad.txt");
  await sync();
  const target = await pictureOfTarget(h.store, SET);
  expect(Object.keys(target).sort()).toEqual(["a.txt", "c.txt"]);
  expect(h.journal.skipped(SET).map((s) => s.path)).toEqual(["bad.txt"]);
  expect((await readSetStatus(h.store, SET)).state).toBe("in-sync");
});

it("never skips a record for errors that need an operator", async () => {
  const denied: Transport = {
    stage: () => Promise.reject(awsError("AccessDenied", 403)),
    send: () => Promise.reject(awsError("AccessDenied", 403)),
  };
  const controller = new AbortController();
  h.restart({ transport: new RetryingTransport(denied, { baseDelayMs: 1, maxDelayMs: 2, signal: controller.signal, onRetry: (_e, attempt) => attempt >= 10 && controller.abort() }) });
  write("a.txt", "waits for the operator");
  await h.agent.scan(SET);
  await expect(h.agent.drain(SET)).rejects.toThrow();
  expect(h.journal.skipped(SET)).toEqual([]);
  expect(h.journal.sets.counters(SET).backlogRecords).toBeGreaterThan(0);
});

it("refuses a payload whose spool file is gone, rather than retrying it forever", async () => {
  const s3 = makeS3Client({ region: "us-east-1", endpoint: "http://127.0.0.1:9", maxAttempts: 1 });
  const sqs = makeSqsClient({ region: "us-east-1", endpoint: "http://127.0.0.1:9", maxAttempts: 1 });
  try {
    const aws = new AwsTransport({ s3, sqs, queueUrl: "http://127.0.0.1:9/q.fifo", bucket: "b" });
    const gone = { set: SET, key: "staging/docs/1.abc", sha256: "abc", size: 5, source: { file: join(h.state.path, "spool", "gone") } };
    await expect(aws.stage(gone)).rejects.toBeInstanceOf(DeliveryRefusedError);
  } finally {
    s3.destroy();
    sqs.destroy();
  }
});

it("lists a refused block of a volume as not replicated, and clears what was skipped once a resync's mirror is sent", async () => {
  const journal = h.journal;
  const [block] = journal.append("vol", [{ op: "block", index: 3, volumeSize: 4 * 512 * 1024, sha256: "a".repeat(64), content: { zero: true } }]);
  const skipped = await skipRefusedRecord(journal, "vol", block ?? 0, "EntityTooLarge: refused");
  expect(skipped?.paths).toEqual(["block 3"]);
  expect(journal.skipped("vol")).toEqual([expect.objectContaining({ path: "block 3", reason: expect.stringMatching(/EntityTooLarge: refused; the target's image differs in this block until `tidemark mirror vol --mode full`/) })]);
  // Sending later records that do not touch it leaves it listed; sending a resync (a full mirror follows) clears it.
  const [other] = journal.append("vol", [{ op: "mkdir", path: "unrelated", mode: 0o755, mtimeNs: "1" }]);
  journal.markSent("vol", other ?? 0, 100);
  expect(journal.skipped("vol").map((s) => s.path)).toEqual(["block 3"]);
  const [resync] = journal.append("vol", [{ op: "resync", reason: "full mirror" }]);
  journal.markSent("vol", resync ?? 0, 100);
  expect(journal.skipped("vol")).toEqual([]);
});
