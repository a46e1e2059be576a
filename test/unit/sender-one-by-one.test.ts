// A message the queue refused as a whole is sent again one record a message,
// to find the record at fault. Its staged payloads were uploaded whole already
// (same key, same sha256): they are not uploaded a second time, as a retried
// message's are not. The applier still checks each against its sha256.

import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Journal, type Change } from "../../agent/journal.ts";
import { sendNext } from "../../agent/sender.ts";
import { DeliveryRefusedError, type StagedPayload, type Transport } from "../../agent/transport/transport.ts";
import { parseMessage } from "../../contract/wire.ts";
import { tempDir } from "../support/tree.ts";
import { sha256Of as sha } from "../support/content.ts";

const SET = "docs";

let state: ReturnType<typeof tempDir>;
let journal: Journal;

beforeEach(() => {
  state = tempDir("tidemark-state-");
  journal = Journal.open(state.path);
});

afterEach(() => {
  journal.close();
  state.remove();
});

/** A file whose content is spooled, `size` bytes long (sparse: the transport here never reads it). */
function spooled(path: string, size: number): Change {
  writeFileSync(join(journal.spoolDir, path), "");
  truncateSync(join(journal.spoolDir, path), size);
  return { op: "put", path, size, mode: 0o644, mtimeNs: "1", sha256: sha(path), content: { spool: path } };
}

/** Stores every payload; refuses every message of more than one record (as a queue refusing one record it does not name). */
class RefusesWholeMessages implements Transport {
  /** Uploads per staging key. */
  readonly uploads = new Map<string, number>();
  /** The records of each message accepted. */
  readonly messages: number[][] = [];

  async stage(payload: StagedPayload): Promise<void> {
    this.uploads.set(payload.key, (this.uploads.get(payload.key) ?? 0) + 1);
  }

  async send(_set: string, _id: string, body: string): Promise<void> {
    const message = parseMessage(body);
    if (!("records" in message)) throw new Error("not a message of records");
    if (message.records.length > 1) throw new DeliveryRefusedError("one of these records is malformed");
    this.messages.push(message.records.map((record) => record.seq));
  }
}

it("sends a refused message's records one a message without uploading what it staged whole again", async () => {
  journal.append(SET, ["a", "b", "c"].map((path) => spooled(path, 1024 ** 2)));
  const transport = new RefusesWholeMessages();
  const sent = await sendNext(journal, transport, SET, { compression: "none" });
  expect(sent.records).toBe(3);
  expect(transport.messages).toEqual([[1], [2], [3]]);
  expect([...transport.uploads.values()]).toEqual([1, 1, 1]);
  expect(journal.sets.counters(SET).backlogRecords).toBe(0);
});

it("after the record at fault is found and skipped, the rest goes without uploading anything twice", async () => {
  journal.append(SET, ["a", "bad", "c"].map((path) => spooled(path, 1024 ** 2)));
  const transport = new RefusesWholeMessages();
  const send = transport.send.bind(transport);
  // The queue refuses the second record alone too: it is skipped (a skip record holds its seq).
  transport.send = async (set, id, body) => {
    const message = parseMessage(body);
    if ("records" in message && message.records.some((record) => record.seq === 2 && record.op === "put")) throw new DeliveryRefusedError("record 2 is malformed");
    return send(set, id, body);
  };
  while ((await sendNext(journal, transport, SET, { compression: "none" })).records > 0);
  expect(journal.skipped(SET).map((skipped) => skipped.path)).toEqual(["bad"]);
  expect([...transport.uploads.values()]).toEqual([1, 1, 1]);
  expect(journal.sets.counters(SET).backlogRecords).toBe(0);
});
