// A set path holding half of a UTF-16 surrogate pair has no UTF-8 form: no S3
// key can name it (encoding one throws URIError). A hostile or broken source
// can still write one as a JSON escape ("\ud800"). The message is refused as a
// message (rejected, with the reason named), never left to fail while the
// record is applied, which would retry it until the dead-letter queue.

import { describe, expect, it } from "vitest";
import { LONE_SURROGATE } from "../../contract/paths.ts";
import { BadMessageError, parseMessage, type WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { encodeKeyPath } from "../../lambdas/s3-object-requests.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { messageBody, putRecord, signedIncoming } from "../support/messages.ts";

const SET = "docs";
const LONE = "a/\ud800";

const cases: [string, WireRecord][] = [
  ["a folder (checked by hand)", { seq: 1, op: "mkdir", path: LONE, mode: 0o755, mtimeNs: "1" }],
  ["a put (checked by hand)", putRecord(1, LONE, "bytes")],
  ["a put, a low surrogate alone", putRecord(1, "\udc00.txt", "bytes")],
  ["a delete (checked by the schema)", { seq: 1, op: "delete", path: LONE }],
  ["a rename's target (checked by the schema)", { seq: 1, op: "rename", from: "a/b", to: LONE }],
];

describe("a set path with a lone surrogate", () => {
  it("has no S3 key: encoding one throws, which is why it must be refused before", () => {
    expect(() => encodeKeyPath(`data/${SET}/${LONE}`)).toThrow(URIError);
  });

  it.each(cases)("in %s: parseMessage refuses the message, naming why", (_what, record) => {
    const body = messageBody(SET, [record]);
    expect(body).toContain("\\ud");
    expect(() => parseMessage(body)).toThrow(BadMessageError);
    expect(() => parseMessage(body)).toThrow(LONE_SURROGATE);
  });

  it.each(cases)("in %s: the applier rejects the message (a status line, no retry) and writes nothing", async (_what, record) => {
    const store = new MemoryStore();
    const outcome = await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m1", SET, messageBody(SET, [record])));
    expect(outcome).toMatchObject({ kind: "rejected", error: expect.stringContaining(LONE_SURROGATE) });
    const written: string[] = [];
    for await (const object of store.list(`data/${SET}/`)) written.push(object.key);
    expect(written).toEqual([]);
  });
});
