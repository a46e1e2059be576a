// Empty files in a packed message (agent/message-pack.ts): an empty file has
// no bytes to put in the pack, so it travels inline. Packed as a zero-length
// slice, a message whose only packed records were empty files went without a
// pack (a pack is at least one byte), and the applier rejected it: the set
// went out of sync and resynced for nothing.

import { createHash, randomBytes } from "node:crypto";
import { expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { packNext } from "../../agent/sender.ts";
import { parseMessage, type WireMessage } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { messageBody, signedIncoming } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

it("applies a message of a large backlog whose packed records are all empty files", async () => {
  const state = tempDir("tidemark-state-");
  const journal = Journal.open(state.path);
  try {
    const put = (path: string, bytes: Buffer) => ({ op: "put" as const, path, size: bytes.length, mode: 0o644, mtimeNs: "2", sha256: sha256(bytes), content: { bytes } });
    const empty = Buffer.alloc(0);
    // Empty files, then a backlog large enough that the set's messages are packed.
    journal.append(SET, [put("a/empty-1", empty), put("a/empty-2", empty), ...Array.from({ length: 12 }, (_, i) => put(`b/big-${i}`, randomBytes(400_000)))]);
    const store = new MemoryStore();
    const applier = new Applier({ store, log: () => {} });
    // The large files are staged one by one (too large for the pack): the empty files are the message's only packed candidates.
    const packed = packNext(journal, SET, { maxBytes: 2_000_000 });
    if (!packed) throw new Error("nothing was packed");
    const message = parseMessage(packed.body) as WireMessage;
    const empties = message.records.filter((r) => r.op === "put" && r.size === 0);
    expect(empties).toHaveLength(2);
    for (const record of empties) expect(record.op === "put" && record.content.kind).toBe("inline");
    for (const payload of packed.staged) if ("bytes" in payload.source) await store.put(payload.key, payload.source.bytes);
    const outcome = await applier.applyMessage(signedIncoming("m1", SET, packed.body));
    expect(outcome).toMatchObject({ kind: "applied" });
    expect((await store.get(`data/${SET}/a/empty-1`))?.body.length).toBe(0);
  } finally {
    journal.close();
    state.remove();
  }
});

it("applies an empty file packed as a zero-length slice in a message without a pack (as agents before the fix sent it)", async () => {
  const store = new MemoryStore();
  const applier = new Applier({ store, log: () => {} });
  const body = messageBody(SET, [{ seq: 1, op: "put", path: "empty", size: 0, mode: 0o644, mtimeNs: "1", sha256: sha256(Buffer.alloc(0)), content: { kind: "packed", encoding: "raw", offset: 0, length: 0 } }]);
  expect(await applier.applyMessage(signedIncoming("m1", SET, body))).toMatchObject({ kind: "applied", records: 1 });
  expect((await store.get(`data/${SET}/empty`))?.body.length).toBe(0);
});
