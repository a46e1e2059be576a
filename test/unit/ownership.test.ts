// A set belongs to the agent whose key the target registered (DESIGN 8): a
// rogue agent with the same credentials and raw forgeries change nothing, are
// recorded with reason and sender, and the owner's stream keeps flowing.

import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { dataKey, ownerKey, stagingKey, statusKey } from "../../contract/layout.ts";
import { SourceChangedError } from "../../lambdas/store/store.ts";
import { generateSigningKey, keyIdOf, OwnerRecordSchema, parseSignature, SIGNATURE_ATTRIBUTE, signatureValid, signMessage } from "../../contract/signing.ts";
import { encodeInline, type WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { setRolesFromEnvironment, SignedOwnership } from "../../lambdas/applier/ownership.ts";
import { readOwner, writeOwner } from "../../lambdas/target/owner.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { listSnapshots } from "../../lambdas/tasks/snapshots.ts";
import { Agent } from "../../agent/agent.ts";
import { Journal } from "../../agent/journal.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { MemoryTransport } from "../support/memory-transport.ts";
import { messageBody, ownerRecordFor, putRecord, signedIncoming, TEST_KEY } from "../support/messages.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "www";

/** Every object but the set's status: what a refused message must leave exactly as it was. */
function snapshotOf(store: MemoryStore): Map<string, unknown> {
  return new Map([...store.objects].filter(([key]) => key !== statusKey(SET)));
}

describe("signatures", () => {
  it("verify over the set and the exact body, and name the key", () => {
    const key = generateSigningKey();
    const body = messageBody(SET, [putRecord(1, "a", "x")]);
    const parsed = parseSignature(signMessage(key, SET, body));
    expect(parsed.keyId).toBe(key.keyId);
    expect(keyIdOf(key.publicKey)).toBe(key.keyId);
    expect(signatureValid(parsed, SET, body)).toBe(true);
    expect(signatureValid(parsed, "other", body)).toBe(false);
    expect(signatureValid(parsed, SET, body.replace('"a"', '"b"'))).toBe(false);
    expect(() => parseSignature("v1.nope")).toThrow(/not a v1 signature/);
    expect(() => parseSignature(`v1.${"A".repeat(43)}.short`)).toThrow(/holds no Ed25519 key and signature/);
  });
});

describe("ownership of a set", () => {
  let h: Harness;
  let refusals: string[];

  beforeEach(async () => {
    refusals = [];
    h = agentHarness(SET, {}, { log: (line) => refusals.push(line) });
    writeFileSync(join(h.src.path, "index.html"), "<h1>genuine</h1>");
    writeFileSync(join(h.src.path, "big.bin"), Buffer.alloc(300 * 1024, 7));
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    await h.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } });
    await h.agent.drain(SET);
  });

  afterEach(async () => {
    await h.close();
  });

  it("registers the key of the first signed message of a new set as its owner", async () => {
    const owner = await readOwner(h.store, SET);
    expect(owner).toMatchObject({ set: SET, keyId: h.transport.key.keyId, publicKey: h.transport.key.publicKey, how: "first-use", previous: [] });
    expect(OwnerRecordSchema.parse(JSON.parse((await h.store.get(ownerKey(SET)))?.body.toString() ?? "{}"))).toEqual(owner);
  });

  it("refuses raw forgeries, records reason and sender, and lets the owner's stream go on", async () => {
    const status = await readSetStatus(h.store, SET);
    const before = snapshotOf(h.store);
    const rogue = generateSigningKey();
    const huge = 9_000_000_000_000_000;
    const emptyManifest = gzipSync(Buffer.alloc(0));
    const verifyDelete: WireRecord = {
      seq: status.lastSeq + 1,
      op: "verify",
      id: "wipe",
      deep: false,
      orphans: "delete",
      size: emptyManifest.length,
      sha256: createHash("sha256").update(emptyManifest).digest("hex"),
      content: encodeInline(emptyManifest, "none"),
    };
    const forgeries: { name: string; incoming: ReturnType<typeof signedIncoming>; reason: RegExp; keyId?: string }[] = [
      { name: "unsigned", incoming: { messageId: "unsigned", groupId: SET, body: messageBody(SET, [putRecord(status.lastSeq + 1, "index.html", "defaced")]) }, reason: /unsigned/ },
      { name: "resync at a huge seq", incoming: signedIncoming("resync", SET, messageBody(SET, [{ seq: huge, op: "resync", reason: "x" }]), rogue), reason: /belongs to key/, keyId: rogue.keyId },
      { name: "verify orphans delete", incoming: signedIncoming("verify", SET, messageBody(SET, [verifyDelete]), rogue), reason: /belongs to key/, keyId: rogue.keyId },
      { name: "prune keep 0", incoming: signedIncoming("prune", SET, messageBody(SET, [{ seq: status.lastSeq + 1, op: "prune", id: "p", keep: 0 }]), rogue), reason: /belongs to key/, keyId: rogue.keyId },
      { name: "garbage signature", incoming: { messageId: "garbage", groupId: SET, body: messageBody(SET, [{ seq: huge, op: "resync", reason: "x" }]), attributes: { [SIGNATURE_ATTRIBUTE]: "v1.x.y" } }, reason: /holds no Ed25519 key/ },
    ];
    // A genuine message, replayed with another body under its signature.
    const genuine = messageBody(SET, [putRecord(status.lastSeq + 1, "index.html", "genuine")]);
    const replayed = { messageId: "replayed", groupId: SET, body: messageBody(SET, [{ seq: huge, op: "resync", reason: "x" }]), attributes: { [SIGNATURE_ATTRIBUTE]: signMessage(h.transport.key, SET, genuine) } };
    forgeries.push({ name: "replayed signature on a modified body", incoming: replayed, reason: /does not match the message/, keyId: h.transport.key.keyId });

    for (const [i, forgery] of forgeries.entries()) {
      const outcome = await h.transport.applier.applyMessage({ ...forgery.incoming, senderId: `AIDAROGUE:${forgery.name}` });
      expect(outcome, forgery.name).toMatchObject({ kind: "rejected", set: SET });
      const after = await readSetStatus(h.store, SET);
      expect(after, forgery.name).toMatchObject({ lastSeq: status.lastSeq, state: "in-sync", refused: { count: i + 1, last: { messageId: forgery.incoming.messageId, sender: `AIDAROGUE:${forgery.name}` } } });
      expect(after.refused?.last.reason, forgery.name).toMatch(forgery.reason);
      expect(after.refused?.last.keyId, forgery.name).toBe(forgery.keyId);
      expect(snapshotOf(h.store), forgery.name).toEqual(before);
    }
    const logged = refusals.map((line) => JSON.parse(line) as { msg: string; messageId: string }).filter((line) => line.msg === "message refused");
    expect(logged.map((line) => line.messageId)).toEqual(forgeries.map((f) => f.incoming.messageId));

    writeFileSync(join(h.src.path, "index.html"), "<h1>genuine, later</h1>");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
    expect(await listSnapshots(h.store, SET)).toHaveLength(1);
  });

  it("refuses a rogue agent over an empty folder under the same set name, and keeps the owner's data and snapshots", async () => {
    const before = snapshotOf(h.store);
    const src = tempDir("tidemark-rogue-src-");
    const state = tempDir("tidemark-rogue-state-");
    const journal = Journal.open(state.path);
    const transport = new MemoryTransport(h.transport.applier, h.store);
    const rogue = new Agent({ sets: [{ name: SET, root: src.path, exclude: [] }], journal, transport, monitorEnabled: false });
    try {
      await rogue.scan(SET);
      await rogue.fullMirror(SET, "take over");
      await rogue.journalPrune(SET, 0);
      await rogue.drain(SET);
      expect(transport.outcomes.length).toBeGreaterThan(0);
      expect(transport.outcomes.every((o) => o.kind === "rejected")).toBe(true);
      expect(snapshotOf(h.store)).toEqual(before);
      expect((await readSetStatus(h.store, SET)).refused?.last).toMatchObject({ keyId: transport.key.keyId, reason: expect.stringMatching(/belongs to key/) });
    } finally {
      await rogue.stop();
      journal.close();
      src.remove();
      state.remove();
    }
    writeFileSync(join(h.src.path, "after.txt"), "still flowing");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
    expect(await readSetStatus(h.store, SET)).toMatchObject({ state: "in-sync" });
  });

  it("lets an unsigned console marker add a recovery point, and nothing that rides along with it", async () => {
    const status = await readSetStatus(h.store, SET);
    const data = [...h.store.objects.keys()].filter((key) => key.startsWith("data/"));
    const body = JSON.stringify({ v: 1, set: SET, task: { label: "from the console" }, records: [{ seq: 9_000_000_000_000_000, op: "resync", reason: "x" }, { seq: status.lastSeq + 1, op: "prune", id: "p", keep: 0 }] });
    expect(await h.transport.applier.applyMessage({ messageId: "console", groupId: SET, body })).toMatchObject({ kind: "marker", status: "succeeded" });
    expect(await readSetStatus(h.store, SET)).toMatchObject({ lastSeq: status.lastSeq, state: "in-sync" });
    expect([...h.store.objects.keys()].filter((key) => key.startsWith("data/"))).toEqual(data);
    expect(await listSnapshots(h.store, SET)).toHaveLength(2);
  });

  it("takes an adopted key from then on and refuses the old one", async () => {
    const successor = generateSigningKey();
    const old = await readOwner(h.store, SET);
    await writeOwner(h.store, { ...ownerRecordFor(SET, successor), previous: old ? [{ keyId: old.keyId, since: old.since, until: new Date().toISOString(), how: old.how }] : [] });
    writeFileSync(join(h.src.path, "refused.txt"), "old key");
    await h.agent.scan(SET);
    await h.agent.drain(SET);
    expect(h.transport.outcomes.at(-1)).toMatchObject({ kind: "rejected", error: expect.stringMatching(/belongs to key/) });
    expect(await h.store.get("data/www/refused.txt")).toBeUndefined();
    const next = (await readSetStatus(h.store, SET)).lastSeq + 1;
    const body = messageBody(SET, [putRecord(next, "adopted.txt", "new host")]);
    expect(await h.transport.applier.applyMessage(signedIncoming("new-host", SET, body, successor))).toMatchObject({ kind: "applied", last: next });
    expect((await h.store.get("data/www/adopted.txt"))?.body.toString()).toBe("new host");
  });
});

describe("sets with history", () => {
  it("are not claimed by the first signed message when no owner is registered", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    await store.put(statusKey(SET), Buffer.from(JSON.stringify({ set: SET, lastSeq: 5, state: "in-sync", appliedRecords: 5, appliedBytes: 0, updatedAt: "x" })));
    const outcome = await applier.applyMessage(signedIncoming("m", SET, messageBody(SET, [putRecord(6, "a", "x")])));
    expect(outcome).toMatchObject({ kind: "rejected", error: expect.stringMatching(/no registered owner.*tidemark adopt www/) });
    expect(await store.get(ownerKey(SET))).toBeUndefined();
    await writeOwner(store, ownerRecordFor(SET, TEST_KEY));
    expect(await applier.applyMessage(signedIncoming("m2", SET, messageBody(SET, [putRecord(6, "a", "x")])))).toMatchObject({ kind: "applied" });
  });

  it("refuse everyone while the owner record is unreadable", async () => {
    const store = new MemoryStore();
    await store.put(ownerKey(SET), Buffer.from("{not json"));
    const outcome = await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m", SET, messageBody(SET, [putRecord(1, "a", "x")])));
    expect(outcome).toMatchObject({ kind: "rejected", error: expect.stringMatching(/owner\.json is not JSON/) });
  });
});

describe("host roles", () => {
  it("refuse a validly signed message from another role than the set's host", async () => {
    const store = new MemoryStore();
    const setRoles = setRolesFromEnvironment({ TIDEMARK_SET_ROLES: JSON.stringify({ [SET]: "AROAWEB1" }) });
    const applier = new Applier({ store, log: () => {}, ownership: new SignedOwnership(store, { setRoles }) });
    const body = messageBody(SET, [putRecord(1, "a", "x")]);
    expect(await applier.applyMessage({ ...signedIncoming("m1", SET, body), senderId: "AROAWEB2:i-0abc" })).toMatchObject({
      kind: "rejected",
      error: expect.stringMatching(/sent by AROAWEB2:i-0abc, not by the role of the host that owns set "www" \(AROAWEB1\)/),
    });
    expect(await readOwner(store, SET)).toBeUndefined();
    expect(await applier.applyMessage({ ...signedIncoming("m2", SET, body), senderId: "AROAWEB1:i-0def" })).toMatchObject({ kind: "applied" });
    expect(() => setRolesFromEnvironment({ TIDEMARK_SET_ROLES: "[1]" })).toThrow(/JSON object of set name -> role id/);
  });
});

describe("queue markers with host roles", () => {
  const marker = (label: string) => JSON.stringify({ v: 1, set: SET, task: { id: label, action: "snapshot", label, timeoutSeconds: 0 } });

  it("are refused and named from another host's role or an unnamed sender, and taken from the set's role and an operator", async () => {
    const store = new MemoryStore();
    const setRoles = setRolesFromEnvironment({ TIDEMARK_SET_ROLES: JSON.stringify({ [SET]: "AROAWEB1", docs: "AROAFILES" }) });
    const applier = new Applier({ store, log: () => {}, ownership: new SignedOwnership(store, { setRoles }) });
    expect(await applier.applyMessage({ ...signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])), senderId: "AROAWEB1:i-0def" })).toMatchObject({ kind: "applied" });

    expect(await applier.applyMessage({ messageId: "rogue", groupId: SET, body: marker("rogue"), senderId: "AROAFILES:i-0abc" })).toMatchObject({
      kind: "rejected",
      error: expect.stringMatching(/was sent by AROAFILES:i-0abc, the role of another host.*owns set "www" \(AROAWEB1\)/),
    });
    expect(await applier.applyMessage({ messageId: "nobody", groupId: SET, body: marker("nobody") })).toMatchObject({ kind: "rejected", error: expect.stringMatching(/names no sender/) });
    expect(await listSnapshots(store, SET)).toHaveLength(0);
    const status = await readSetStatus(store, SET);
    expect(status).toMatchObject({ state: "in-sync", lastSeq: 1, refused: { count: 2, last: { messageId: "nobody" } } });
    expect(status.refused?.byKey?.unsigned?.count).toBe(2);
    expect(status.lastRejected).toBeUndefined();

    expect(await applier.applyMessage({ messageId: "own", groupId: SET, body: marker("own"), senderId: "AROAWEB1:i-0def" })).toMatchObject({ kind: "marker", status: "succeeded" });
    expect(await applier.applyMessage({ messageId: "ops", groupId: SET, body: marker("ops"), senderId: "AROAOPERATOR:alice" })).toMatchObject({ kind: "marker", status: "succeeded" });
    expect((await listSnapshots(store, SET)).map((s) => s.taskId)).toEqual(["own", "ops"]);
  });

  it("are taken from any sender when the stack gives hosts no roles", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    expect(await applier.applyMessage({ messageId: "console", groupId: SET, body: marker("console"), senderId: "AROAANY:x" })).toMatchObject({ kind: "marker", status: "succeeded" });
  });
});

describe("unreadable messages", () => {
  it("are the set's own rejection only with its owner's signature; anyone else's is a refusal naming the sender", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    expect(await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])))).toMatchObject({ kind: "applied" });

    expect(await applier.applyMessage({ messageId: "garbage", groupId: SET, body: "not json at all", senderId: "AIDAROGUE:qa" })).toMatchObject({ kind: "rejected" });
    let status = await readSetStatus(store, SET);
    expect(status.lastRejected).toBeUndefined();
    expect(status).toMatchObject({ state: "in-sync", lastSeq: 1 });
    expect(status.refused?.last).toMatchObject({
      messageId: "garbage",
      sender: "AIDAROGUE:qa",
      reason: expect.stringMatching(/^an unreadable message without a signature, so not counted as the owner's \(nothing of the owner's was lost\): message body is not JSON/),
    });
    const rogue = generateSigningKey();
    expect(await applier.applyMessage(signedIncoming("forged", SET, "{also not json", rogue))).toMatchObject({ kind: "rejected" });
    status = await readSetStatus(store, SET);
    expect(status.lastRejected).toBeUndefined();
    expect(status.refused?.byKey?.[rogue.keyId]?.last).toMatchObject({ messageId: "forged", keyId: rogue.keyId, reason: expect.stringMatching(/signed by key .*, not by the set's owner/) });
    expect(status.refused?.count).toBe(2);

    // The owner's own unreadable message lost what it carried: the set's rejection, as before.
    expect(await applier.applyMessage(signedIncoming("owners", SET, "{owner's but broken"))).toMatchObject({ kind: "rejected" });
    status = await readSetStatus(store, SET);
    expect(status.lastRejected).toMatchObject({ messageId: "owners", error: expect.stringMatching(/not JSON/) });
    expect(status.refused?.count).toBe(2);
  });
});

describe("unreadable messages with host roles", () => {
  it("are the set's own rejection only from the set's role; the owner's signature from another role is a refusal naming it", async () => {
    const store = new MemoryStore();
    const setRoles = setRolesFromEnvironment({ TIDEMARK_SET_ROLES: JSON.stringify({ [SET]: "AROAWEB1", docs: "AROAFILES" }) });
    const applier = new Applier({ store, log: () => {}, ownership: new SignedOwnership(store, { setRoles }) });
    expect(await applier.applyMessage({ ...signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])), senderId: "AROAWEB1:i-0def" })).toMatchObject({ kind: "applied" });
    expect(await applier.applyMessage({ ...signedIncoming("other-role", SET, "{broken"), senderId: "AROAFILES:i-0abc" })).toMatchObject({ kind: "rejected" });
    let status = await readSetStatus(store, SET);
    expect(status.lastRejected).toBeUndefined();
    expect(status.refused?.last).toMatchObject({ messageId: "other-role", sender: "AROAFILES:i-0abc", reason: expect.stringMatching(/not by the role of the host that owns set/) });
    expect(await applier.applyMessage({ ...signedIncoming("own-role", SET, "{broken"), senderId: "AROAWEB1:i-0def" })).toMatchObject({ kind: "rejected" });
    status = await readSetStatus(store, SET);
    expect(status.lastRejected).toMatchObject({ messageId: "own-role" });
  });
});

describe("unreadable messages on a set with history and no owner", () => {
  it("are no one's own rejection: a validly signed one of any key is a refusal, as that key's records would be", async () => {
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    expect(await applier.applyMessage(signedIncoming("m1", SET, messageBody(SET, [putRecord(1, "a", "x")])))).toMatchObject({ kind: "applied" });
    // Replicated before owners were registered: history, and no owner record.
    await store.delete(ownerKey(SET));
    const rogue = generateSigningKey();
    expect(await applier.applyMessage(signedIncoming("forged", SET, "{not json", rogue))).toMatchObject({ kind: "rejected" });
    const status = await readSetStatus(store, SET);
    expect(status.lastRejected).toBeUndefined();
    expect(status.refused?.last).toMatchObject({ messageId: "forged", keyId: rogue.keyId, reason: expect.stringMatching(/has history on the target and no registered owner/) });
  });
});

describe("staged objects", () => {
  const content = Buffer.alloc(300 * 1024, 1);
  const sha = createHash("sha256").update(content).digest("hex");
  const put: WireRecord = { seq: 1, op: "put", path: "big.bin", size: content.length, mode: 0o644, mtimeNs: "1", sha256: sha, content: { kind: "staged" } };
  const body = messageBody(SET, [put]);

  it("are not written when their content is not what the signed message names", async () => {
    const store = new MemoryStore();
    await store.put(stagingKey(SET, 1, sha), Buffer.alloc(content.length, 2));
    const outcome = await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m", SET, body));
    expect(outcome).toMatchObject({ kind: "rejected", error: expect.stringMatching(/has sha256 [0-9a-f]{64}, not the [0-9a-f]{64} its message names/) });
    expect(await store.get(dataKey(SET, "big.bin"))).toBeUndefined();
  });

  it("are copied only in the version that was checked: one swapped after the check is not written", async () => {
    /** A store whose staged object is replaced right after the applier checked it. */
    class SwappingStore extends MemoryStore {
      override async contentSha256(key: string) {
        const checked = await super.contentSha256(key);
        await this.put(key, Buffer.alloc(content.length, 3));
        return checked;
      }
    }
    const store = new SwappingStore();
    await store.put(stagingKey(SET, 1, sha), content);
    const applier = new Applier({ store, log: () => {} });
    await expect(applier.applyMessage(signedIncoming("m", SET, body))).rejects.toThrow(SourceChangedError);
    expect(await store.get(dataKey(SET, "big.bin"))).toBeUndefined();
    expect((await readSetStatus(store, SET)).lastSeq).toBe(0);
    // Redelivered: the check now sees the swapped bytes and refuses them.
    expect(await applier.applyMessage(signedIncoming("m", SET, body))).toMatchObject({ kind: "rejected" });
    expect(await store.get(dataKey(SET, "big.bin"))).toBeUndefined();
  });

  it("count when they hold what the message names", async () => {
    const store = new MemoryStore();
    await store.put(stagingKey(SET, 1, sha), content);
    expect(await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m", SET, body))).toMatchObject({ kind: "applied" });
    expect((await store.get(dataKey(SET, "big.bin")))?.body.equals(content)).toBe(true);
  });
});
