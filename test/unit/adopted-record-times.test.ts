// A host that takes a set over journals while another host owns it: it is held
// `not-owner` and sends nothing, but its records carry the times it journaled
// them. Once `tidemark adopt` makes it the owner, it sends them; counted at
// those times, they rewrote the moments before the adoption, when the target
// held the previous owner's tree (QA4 Q3: `restore --at` a moment the first
// host still owned the set returned the second host's files). A record counts
// no earlier than its signer's adoption (the owner record's `since`,
// lambdas/history/record-time.ts); an owner's later backlog keeps its times.

import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { SQSRecord } from "aws-lambda";
import { describe, expect, it } from "vitest";
import { restoreAt } from "../../agent/restore-at.ts";
import { DAY_MS } from "../../contract/history.ts";
import { initialStatus, ownerKey } from "../../contract/layout.ts";
import { generateSigningKey, type SigningKey } from "../../contract/signing.ts";
import type { WireMessage, WireRecord } from "../../contract/wire.ts";
import { Applier, type IncomingMessage } from "../../lambdas/applier/applier.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { SignedOwnership } from "../../lambdas/applier/ownership.ts";
import { MAX_RECORD_LAG_MS, recordTime } from "../../lambdas/history/record-time.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { adoptSet, writeOwner } from "../../lambdas/target/owner.ts";
import { ownerRecordFor, putRecord, signedIncoming, signedSqsAttributes, TEST_KEY } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

const SET = "pt";
const SECOND = 1000;

function body(records: WireRecord[], gen?: string): string {
  const message: WireMessage = { v: 1, set: SET, records, ...(gen !== undefined ? { gen } : {}) };
  return JSON.stringify(message);
}

/** The set's files and their contents as `restore --at` writes them for a moment. */
async function treeAt(store: MemoryStore, moment: number): Promise<Record<string, string>> {
  const out = tempDir("tidemark-at-");
  try {
    await restoreAt(store, SET, moment, out.path, { force: true });
    const tree: Record<string, string> = {};
    for (const name of readdirSync(out.path).sort()) tree[name] = readFileSync(join(out.path, name), "utf8");
    return tree;
  } finally {
    out.remove();
  }
}

const A_TREE = { "a.txt": "A's a", "b.txt": "A's b" };

/** Host A's records, journaled and sent at `at`. */
function hostATree(at: number): WireRecord[] {
  return [
    { ...putRecord(1, "a.txt", "A's a"), at },
    { ...putRecord(2, "b.txt", "A's b"), at },
  ];
}

/** Host B's new generation (its own journal): a resync and its mirror, journaled at `at` while A owned the set. */
function hostBMirror(at: number): WireRecord[] {
  return [
    { seq: 1, op: "resync", reason: "new journal", at },
    { ...putRecord(2, "a.txt", "B's a"), at },
    { ...putRecord(3, "only-b.txt", "B's own"), at },
  ];
}

describe("a host adopted as a set's owner", () => {
  it("changes the history only from its adoption on, though it journaled its records before", async () => {
    const store = new MemoryStore();
    const start = Date.now() - 2 * DAY_MS;
    let now = start;
    const applier = new Applier({ store, log: () => {}, now: () => new Date(now), history: { days: 7 } });
    const send = (records: WireRecord[], sentAt: number, key: SigningKey, gen?: string) => {
      const incoming: IncomingMessage = { ...signedIncoming(`m${now}`, SET, body(records, gen), key), sentAt };
      return applier.applyMessage(incoming);
    };
    const hostB = generateSigningKey();

    await send(hostATree(start), start, TEST_KEY);
    // B starts on the set 10 minutes on: held not-owner, it journals its mirror, and sends nothing.
    const journaled = start + 10 * 60 * SECOND;
    // 25 s later an operator adopts the set for B; B sends what it journaled and the target applies it.
    const adopted = journaled + 25 * SECOND;
    await adoptSet(store, SET, hostB, new Date(adopted));
    now = adopted + 10 * SECOND;
    expect(await send(hostBMirror(journaled), now, hostB, "gB")).toMatchObject({ kind: "applied" });

    // Until the adoption the target held A's files: every moment before it restores them.
    expect(await treeAt(store, journaled - SECOND)).toEqual(A_TREE);
    expect(await treeAt(store, journaled + 10 * SECOND)).toEqual(A_TREE);
    expect(await treeAt(store, adopted - 1)).toEqual(A_TREE);
    // From the adoption on, B's (the resync keeps what B's mirror does not replace until a verify removes it).
    expect(await treeAt(store, adopted)).toEqual({ "a.txt": "B's a", "b.txt": "A's b", "only-b.txt": "B's own" });

    // B's later backlog keeps its honest times (after the adoption, within the hour before its send).
    const edited = now + 5 * 60 * SECOND;
    now = edited + 10 * 60 * SECOND;
    await send([{ ...putRecord(4, "a.txt", "B's a, edited"), at: edited }], now, hostB, "gB");
    expect((await treeAt(store, edited - 1))["a.txt"]).toBe("B's a");
    expect((await treeAt(store, edited))["a.txt"]).toBe("B's a, edited");
  });

  it("places its records after the adoption also through the handler, its resync and mirror in one batch", async () => {
    const store = new MemoryStore();
    const start = Date.now() - 2 * DAY_MS;
    let now = start;
    const handler = createHandler(new Applier({ store, log: () => {}, now: () => new Date(now), history: { days: 7 } }), () => {});
    const record = (id: string, records: WireRecord[], sentAt: number, key: SigningKey, gen?: string): SQSRecord => {
      const text = body(records, gen);
      return {
        messageId: id,
        receiptHandle: `rh-${id}`,
        body: text,
        attributes: { ApproximateReceiveCount: "1", SentTimestamp: String(sentAt), SenderId: "x", ApproximateFirstReceiveTimestamp: String(sentAt), MessageGroupId: SET },
        messageAttributes: signedSqsAttributes(SET, text, key),
        md5OfBody: "",
        eventSource: "aws:sqs",
        eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
        awsRegion: "us-east-1",
      };
    };
    const hostB = generateSigningKey();

    await handler({ Records: [record("a1", hostATree(start), start, TEST_KEY)] });
    const journaled = start + 10 * 60 * SECOND;
    const adopted = journaled + 25 * SECOND;
    await adoptSet(store, SET, hostB, new Date(adopted));
    now = adopted + 10 * SECOND;
    const [resync, ...mirror] = hostBMirror(journaled);
    if (!resync) throw new Error("unreachable: the mirror starts with its resync");
    const response = await handler({ Records: [record("b1", [resync], now, hostB, "gB"), record("b2", mirror, now, hostB, "gB")] });
    expect(response.batchItemFailures).toEqual([]);

    expect(await treeAt(store, adopted - 1)).toEqual(A_TREE);
    expect(await treeAt(store, adopted)).toEqual({ "a.txt": "B's a", "b.txt": "A's b", "only-b.txt": "B's own" });
  });

  it("is told by the ownership check from when it owns the set, unless its record does not say", async () => {
    const store = new MemoryStore();
    const check = (key: SigningKey) => new SignedOwnership(store).check(SET, signedIncoming("m", SET, body([putRecord(1, "a.txt", "a")]), key), initialStatus(SET));
    const hostB = generateSigningKey();
    const adopted = Date.parse("2026-12-02T18:48:06.000Z");
    await adoptSet(store, SET, hostB, new Date(adopted));
    expect(await check(hostB)).toEqual({ accepted: true, ownerSince: adopted });
    // An owner record whose `since` does not parse bounds nothing more: the set still applies, by the other bounds.
    await writeOwner(store, { ...ownerRecordFor(SET, hostB), since: "not a time" });
    expect(await check(hostB)).toEqual({ accepted: true });
    // A set's first owner took over no history: its backlog keeps the hour's bound.
    await store.delete(ownerKey(SET));
    expect(await check(TEST_KEY)).toEqual({ accepted: true });
  });

  it("counts a record no earlier than the adoption, and otherwise as before", () => {
    const now = 10 * DAY_MS;
    const adopted = now - 60_000;
    expect(recordTime(now - DAY_MS, now - 5 * 60_000, now, now, adopted)).toBe(adopted);
    expect(recordTime(now - DAY_MS, now - 30_000, now, now, adopted)).toBe(now - 30_000);
    // Never after the applier's clock (an adoption stamped by a clock ahead), never before the entry before it.
    expect(recordTime(now - DAY_MS, now - 5 * 60_000, now, now, now + DAY_MS)).toBe(now);
    expect(recordTime(now - 1000, now - 5 * 60_000, now, now, adopted)).toBe(now - 1000);
    // An adoption long ago bounds nothing the hour does not.
    expect(recordTime(now - 5 * DAY_MS, now - DAY_MS, now, now, now - 3 * DAY_MS)).toBe(now - MAX_RECORD_LAG_MS);
    expect(recordTime(now - 5 * DAY_MS, now - DAY_MS, now, now, undefined)).toBe(now - MAX_RECORD_LAG_MS);
  });
});
