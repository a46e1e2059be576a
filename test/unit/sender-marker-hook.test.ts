// A marker right after a large file shares its message (the records after a
// large upload join its message), and its on-transmit command ran before the
// message's uploads began: minutes before the marker went. It now runs once
// the message's payloads are staged, just before the message is sent.

import { createHash } from "node:crypto";
import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Journal, type Change } from "../../agent/journal.ts";
import { sendNext } from "../../agent/sender.ts";
import { LARGE_STAGED_BYTES } from "../../agent/staged-uploads.ts";
import type { StagedPayload, Transport } from "../../agent/transport/transport.ts";
import { parseMessage } from "../../contract/wire.ts";
import { tempDir } from "../support/tree.ts";

const SET = "db";

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

/** A large file whose content is spooled (sparse: the transport here never reads it). */
function large(path: string): Change {
  writeFileSync(join(journal.spoolDir, path), "");
  truncateSync(join(journal.spoolDir, path), LARGE_STAGED_BYTES + 1);
  return { op: "put", path, size: LARGE_STAGED_BYTES + 1, mode: 0o644, mtimeNs: "1", sha256: createHash("sha256").update(path).digest("hex"), content: { spool: path } };
}

/** Records what happens, in order; each upload takes a moment, as a large one takes minutes. */
class Recording implements Transport {
  readonly events: string[] = [];

  async stage(payload: StagedPayload): Promise<void> {
    this.events.push(`upload ${payload.key} begins`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    this.events.push(`upload ${payload.key} stored`);
  }

  async send(_set: string, _id: string, body: string): Promise<void> {
    const message = parseMessage(body);
    if (!("records" in message)) throw new Error("not a message of records");
    this.events.push(`message ${message.records.map((record) => record.op).join(",")} sent`);
  }
}

it("runs a marker's on-transmit command once the large file before it is staged, just before their message is sent", async () => {
  journal.append(SET, [large("big.img"), { op: "task", id: "t1", fields: { action: "snapshot", timeoutSeconds: 0, insertedAt: new Date(0).toISOString() }, onTransmit: "true" }]);
  const transport = new Recording();
  const sent = await sendNext(journal, transport, SET, {
    compression: "none",
    beforeMarkers: async (_set, markers) => {
      transport.events.push(`on-transmit of ${markers.map((marker) => marker.id).join(",")}`);
    },
  });
  expect(sent.records).toBe(2);
  expect(transport.events.map((event) => event.replace(/staging\/\S+/, "KEY"))).toEqual(["upload KEY begins", "upload KEY stored", "on-transmit of t1", "message put,task sent"]);
});
