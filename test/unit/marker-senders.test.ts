// `tidemark:markerSenders`: with the setting, a marker sent straight to the
// queue is taken only from the role of the host that owns the set or from a
// listed principal; the shared agent role, another host's role, any other
// principal and an unnamed sender are refused and named in the set's status.
// Without it, the looser default stays.

import { describe, expect, it } from "vitest";
import type { Context, SQSRecord } from "aws-lambda";
import { Applier } from "../../lambdas/applier/applier.ts";
import { createHandler } from "../../lambdas/applier/handler.ts";
import { MARKER_SENDERS_ENV, markerSendersFromEnvironment, setRolesFromEnvironment, SignedOwnership } from "../../lambdas/applier/ownership.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { listSnapshots } from "../../lambdas/tasks/snapshots.ts";
import { findProblems } from "../../agent/set-health.ts";
import type { SetCounters } from "../../agent/journal.ts";
import { messageBody, putRecord, signedIncoming, signedSqsAttributes } from "../support/messages.ts";

const SET = "www";
const WEB1 = "AROAWEB1";
const FILES = "AROAFILES";
/** The shared agent role (tidemark:agentRoleTrust) a host may also assume. */
const AGENT_ROLE = "AROAAGENTSHARED";
const OPS_ROLE = "AROAOPS";
const OPS_ARN = "arn:aws:iam::123456789012:role/ops";
const ALICE_USER = "AIDAALICE";
const ALICE_ARN = "arn:aws:iam::123456789012:user/alice";

const setRoles = new Map([
  [SET, WEB1],
  ["docs", FILES],
]);
const markerSenders = markerSendersFromEnvironment({
  [MARKER_SENDERS_ENV]: JSON.stringify([
    { id: OPS_ROLE, arn: OPS_ARN },
    { id: ALICE_USER, arn: ALICE_ARN },
  ]),
});

const origin = (senderId?: string) => ({ messageId: "m", body: "{}", ...(senderId === undefined ? {} : { senderId }) });

describe("checkMarker with tidemark:markerSenders and host roles", () => {
  const ownership = new SignedOwnership(new MemoryStore(), { setRoles, ...(markerSenders ? { markerSenders } : {}) });

  it("takes a marker from the owning host's role, a listed role's session and a listed user", () => {
    expect(ownership.checkMarker(SET, origin(`${WEB1}:i-0def`))).toBeUndefined();
    expect(ownership.checkMarker(SET, origin(`${OPS_ROLE}:alice@example.com`))).toBeUndefined();
    expect(ownership.checkMarker(SET, origin(ALICE_USER))).toBeUndefined();
    // A listed sender may send for any set.
    expect(ownership.checkMarker("docs", origin(`${OPS_ROLE}:bob`))).toBeUndefined();
  });

  it("refuses the unlisted shared agent role, naming the sender and who is allowed", () => {
    expect(ownership.checkMarker(SET, origin(`${AGENT_ROLE}:i-0abc`))).toEqual({
      sender: `${AGENT_ROLE}:i-0abc`,
      reason: `a marker sent straight to the queue was sent by ${AGENT_ROLE}:i-0abc, which is neither the role of the host that owns set "www" (${WEB1}) nor one of the stack's tidemark:markerSenders (${OPS_ARN} (${OPS_ROLE}), ${ALICE_ARN} (${ALICE_USER}))`,
    });
  });

  it("refuses another host's role, and says it is one", () => {
    expect(ownership.checkMarker(SET, origin(`${FILES}:i-0abc`))).toMatchObject({
      sender: `${FILES}:i-0abc`,
      reason: expect.stringMatching(/^a marker sent straight to the queue was sent by AROAFILES:i-0abc, the role of another host, which is neither the role of the host that owns set "www" \(AROAWEB1\) nor one of the stack's tidemark:markerSenders/),
    });
  });

  it("refuses a marker whose sender the queue did not name", () => {
    const refusal = ownership.checkMarker(SET, origin());
    expect(refusal?.sender).toBeUndefined();
    expect(refusal?.reason).toMatch(/^a marker sent straight to the queue names no sender; set "www" takes such markers only from the role of the host that owns set "www" \(AROAWEB1\) or one of the stack's tidemark:markerSenders \(arn:aws:iam::123456789012:role\/ops/);
  });

  it("does not take a listed id as a prefix: only the whole role id (before the session) or user id matches", () => {
    expect(ownership.checkMarker(SET, origin(`${OPS_ROLE}X:alice`))).toMatchObject({ sender: `${OPS_ROLE}X:alice` });
    expect(ownership.checkMarker(SET, origin(`${ALICE_USER}2`))).toMatchObject({ sender: `${ALICE_USER}2` });
  });

  it("with an empty list, takes markers only from the owning host's role", () => {
    const strict = new SignedOwnership(new MemoryStore(), { setRoles, markerSenders: new Map() });
    expect(strict.checkMarker(SET, origin(`${WEB1}:i-0def`))).toBeUndefined();
    expect(strict.checkMarker(SET, origin(`${OPS_ROLE}:alice`))?.reason).toMatch(/nor a sender the stack's tidemark:markerSenders lists \(it lists none\)$/);
  });
});

describe("checkMarker with tidemark:markerSenders and no host roles (the shared agent policy)", () => {
  const ownership = new SignedOwnership(new MemoryStore(), { ...(markerSenders ? { markerSenders } : {}) });

  it("takes markers only from listed senders: the shared agent role cannot be told from an operator unless listed", () => {
    expect(ownership.checkMarker(SET, origin(`${OPS_ROLE}:alice`))).toBeUndefined();
    expect(ownership.checkMarker(SET, origin(ALICE_USER))).toBeUndefined();
    expect(ownership.checkMarker(SET, origin(`${AGENT_ROLE}:i-0abc`))).toEqual({
      sender: `${AGENT_ROLE}:i-0abc`,
      reason: `a marker sent straight to the queue was sent by ${AGENT_ROLE}:i-0abc, which is not one of the stack's tidemark:markerSenders (${OPS_ARN} (${OPS_ROLE}), ${ALICE_ARN} (${ALICE_USER}))`,
    });
    expect(ownership.checkMarker(SET, origin())?.reason).toMatch(/names no sender; set "www" takes such markers only from one of the stack's tidemark:markerSenders/);
  });
});

describe("checkMarker without tidemark:markerSenders (the looser default)", () => {
  it("with host roles, takes a marker from any sender that is no host's role, the shared agent role included", () => {
    const ownership = new SignedOwnership(new MemoryStore(), { setRoles });
    expect(ownership.checkMarker(SET, origin(`${AGENT_ROLE}:i-0abc`))).toBeUndefined();
    expect(ownership.checkMarker(SET, origin(`${FILES}:i-0abc`))?.reason).toMatch(/the role of another host/);
  });

  it("without host roles, takes a marker from anyone", () => {
    expect(new SignedOwnership(new MemoryStore()).checkMarker(SET, origin(`${AGENT_ROLE}:i-0abc`))).toBeUndefined();
  });
});

describe("the applier's environment", () => {
  it("gives the listed senders by id, absent when the stack has no setting, and refuses a malformed value", () => {
    expect(markerSenders).toEqual(
      new Map([
        [OPS_ROLE, OPS_ARN],
        [ALICE_USER, ALICE_ARN],
      ]),
    );
    expect(markerSendersFromEnvironment({})).toBeUndefined();
    expect(markerSendersFromEnvironment({ [MARKER_SENDERS_ENV]: "[]" })).toEqual(new Map());
    expect(() => markerSendersFromEnvironment({ [MARKER_SENDERS_ENV]: "{" })).toThrow(/TIDEMARK_MARKER_SENDERS is not JSON/);
    expect(() => markerSendersFromEnvironment({ [MARKER_SENDERS_ENV]: JSON.stringify([{ id: "", arn: OPS_ARN }]) })).toThrow(/JSON array of \{ "id": unique id, "arn": ARN \}/);
    expect(() => markerSendersFromEnvironment({ [MARKER_SENDERS_ENV]: JSON.stringify({ [OPS_ROLE]: OPS_ARN }) })).toThrow(/JSON array/);
  });
});

describe("queue markers at the applier with tidemark:markerSenders", () => {
  const marker = (label: string) => JSON.stringify({ v: 1, set: SET, task: { id: label, action: "snapshot", label, timeoutSeconds: 0 } });

  it("refuse one from the shared agent role and name it in the set's status; take one from a listed sender", async () => {
    const store = new MemoryStore();
    const roles = setRolesFromEnvironment({ TIDEMARK_SET_ROLES: JSON.stringify(Object.fromEntries(setRoles)) });
    const applier = new Applier({ store, log: () => {}, ownership: new SignedOwnership(store, { setRoles: roles, ...(markerSenders ? { markerSenders } : {}) }) });
    expect(await applier.applyMessage({ ...signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])), senderId: `${WEB1}:i-0def` })).toMatchObject({ kind: "applied" });

    expect(await applier.applyMessage({ messageId: "hold", groupId: SET, body: marker("hold"), senderId: `${AGENT_ROLE}:i-0abc` })).toMatchObject({
      kind: "rejected",
      error: expect.stringMatching(/sent by AROAAGENTSHARED:i-0abc, which is neither the role of the host that owns set "www"/),
    });
    expect(await listSnapshots(store, SET)).toHaveLength(0);
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "in-sync", lastSeq: 1, refused: { count: 1, last: { messageId: "hold", sender: `${AGENT_ROLE}:i-0abc` } } });
    expect(status.queueMarker).toBeUndefined();
    expect(status.lastRejected).toBeUndefined();
    // What `tidemark status` says of it.
    const counters: SetCounters = { nextSeq: 2, sentSeq: 1, backlogRecords: 0, backlogBytes: 0, messagesSent: 1, bytesSent: 1, lastSendError: null, overflowed: false, watcherProblem: null };
    const problem = findProblems({ set: SET, counters, generation: undefined, target: { status }, now: new Date() }).find((p) => p.kind === "refused-sender");
    expect(problem?.message).toMatch(/last hold at .* \(sender AROAAGENTSHARED:i-0abc\): a marker sent straight to the queue was sent by AROAAGENTSHARED:i-0abc, which is neither .* nor one of the stack's tidemark:markerSenders \(arn:aws:iam::123456789012:role\/ops/);

    expect(await applier.applyMessage({ messageId: "ops", groupId: SET, body: marker("ops"), senderId: `${OPS_ROLE}:alice` })).toMatchObject({ kind: "marker", status: "succeeded" });
    expect(await applier.applyMessage({ messageId: "own", groupId: SET, body: marker("own"), senderId: `${WEB1}:i-0def` })).toMatchObject({ kind: "marker", status: "succeeded" });
    expect((await listSnapshots(store, SET)).map((s) => s.taskId)).toEqual(["ops", "own"]);
    expect((await readSetStatus(store, SET)).refused?.count).toBe(1);
  });
});

describe("the agent's own markers with tidemark:markerSenders", () => {
  it("are unaffected: a signed in-stream task from the unlisted shared agent role is applied and its snapshot taken", async () => {
    // No hosts: every agent sends as the shared agent role, which the setting refuses for queue markers.
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {}, ownership: new SignedOwnership(store, { markerSenders: new Map([[OPS_ROLE, OPS_ARN]]) }) });
    const body = messageBody(SET, [putRecord(1, "a.db", "quiesced"), { seq: 2, op: "task", id: "nightly", action: "snapshot", timeoutSeconds: 60 }]);
    expect(await applier.applyMessage({ ...signedIncoming("m1", SET, body), senderId: `${AGENT_ROLE}:i-0abc` })).toMatchObject({ kind: "applied" });
    expect((await listSnapshots(store, SET)).map((s) => s.taskId)).toEqual(["nightly"]);
    expect((await readSetStatus(store, SET)).refused).toBeUndefined();
  });
});

describe("queue markers in a batch with tidemark:markerSenders", () => {
  function record(messageId: string, body: string, senderId: string, signed: boolean): SQSRecord {
    return {
      messageId,
      receiptHandle: `rh-${messageId}`,
      body,
      attributes: { ApproximateReceiveCount: "1", SentTimestamp: String(Date.now()), SenderId: senderId, ApproximateFirstReceiveTimestamp: "0", MessageGroupId: SET },
      messageAttributes: signed ? signedSqsAttributes(SET, body) : {},
      md5OfBody: "",
      eventSource: "aws:sqs",
      eventSourceARN: "arn:aws:sqs:us-east-1:000000000000:tidemark.fifo",
      awsRegion: "us-east-1",
    };
  }
  const marker = (id: string) => JSON.stringify({ v: 1, set: SET, task: { id, action: "snapshot", label: id } });
  // What the handler reads of Lambda's context: the time left.
  const context = { getRemainingTimeInMillis: () => 120_000 } as Context;

  it("neither a refused marker nor a listed sender's fails or holds the messages after it in the batch", async () => {
    const store = new MemoryStore();
    const handler = createHandler(new Applier({ store, log: () => {}, ownership: new SignedOwnership(store, { markerSenders: new Map([[OPS_ROLE, OPS_ARN]]) }) }), () => {});
    const put = (seq: number, path: string) => messageBody(SET, [putRecord(seq, path, path)]);
    const refused = await handler({ Records: [record("a1", put(1, "one"), `${AGENT_ROLE}:i-0abc`, true), record("a2", marker("agent"), `${AGENT_ROLE}:i-0abc`, false), record("a3", put(2, "two"), `${AGENT_ROLE}:i-0abc`, true)] }, context);
    expect(refused.batchItemFailures).toEqual([]);
    expect((await store.get(`data/${SET}/two`))?.body.toString()).toBe("two");
    expect((await readSetStatus(store, SET)).refused).toMatchObject({ count: 1, last: { messageId: "a2" } });
    const accepted = await handler({ Records: [record("b1", put(3, "three"), `${AGENT_ROLE}:i-0abc`, true), record("b2", marker("ops"), `${OPS_ROLE}:alice`, false), record("b3", put(4, "four"), `${AGENT_ROLE}:i-0abc`, true)] }, context);
    expect(accepted.batchItemFailures).toEqual([]);
    expect((await store.get(`data/${SET}/four`))?.body.toString()).toBe("four");
    expect((await listSnapshots(store, SET)).map((s) => s.taskId)).toEqual(["ops"]);
  });
});
