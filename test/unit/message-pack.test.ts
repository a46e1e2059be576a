// Packed content (contract/packed-content.ts): with a backlog larger than
// messages carry inline, a message's small files travel in one staged pack
// and the message holds their metadata; the applier takes the pack only as
// the signed message describes it. A lone change still goes inline.

import { createHash, randomBytes } from "node:crypto";
import { zstdCompressSync, zstdDecompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { packNext, sendNext } from "../../agent/sender.ts";
import { stagingKey } from "../../contract/layout.ts";
import { MAX_MESSAGE_BYTES, parseMessage, serializeMessage, type WireMessage, type WireRecord } from "../../contract/wire.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { DeliveryRefusedError, type Transport } from "../../agent/transport/transport.ts";
import { MemoryTransport } from "../support/memory-transport.ts";
import { messageBody, signedIncoming } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

/** Files half text, half random (as a real tree), journaled as the scan would. */
function journalFiles(journal: Journal, count: number, size: number): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) files.set(`d/f${i}.dat`, i % 2 === 0 ? Buffer.from(`line ${i} of a text file\n`.repeat(size / 24)) : randomBytes(size));
  journal.append(SET, [
    { op: "mkdir", path: "d", mode: 0o755, mtimeNs: "1" },
    ...[...files].map(([path, bytes]) => ({ op: "put" as const, path, size: bytes.length, mode: 0o644, mtimeNs: "2", sha256: sha256(bytes), content: { bytes } })),
  ]);
  return files;
}

function withJournal(test: (journal: Journal) => Promise<void>): () => Promise<void> {
  return async () => {
    const state = tempDir("tidemark-state-");
    const journal = Journal.open(state.path);
    try {
      await test(journal);
    } finally {
      journal.close();
      state.remove();
    }
  };
}

describe("the agent packing a message", () => {
  it(
    "puts a large backlog's small files into the message's pack, the message naming each one's slice",
    withJournal(async (journal) => {
      const files = journalFiles(journal, 400, 8 * 1024);
      const packed = packNext(journal, SET, { wholePacks: true });
      if (!packed) throw new Error("nothing was packed");
      const message = parseMessage(packed.body) as WireMessage;
      const puts = message.records.filter((r) => r.op === "put");
      // Far more files than fit inline in one message (about fifty of these would).
      expect(puts.length).toBe(400);
      expect(Buffer.byteLength(packed.body)).toBeLessThanOrEqual(MAX_MESSAGE_BYTES);
      expect(packed.body).toBe(serializeMessage(JSON.parse(packed.body) as WireMessage));
      const pack = packed.staged.find((payload) => payload.key === stagingKey(SET, packed.first, message.pack?.sha256 ?? ""));
      if (!pack || !("bytes" in pack.source)) throw new Error("the pack is not staged with the message");
      // The pack is compressed as a whole; each record's slice is its file's bytes as they are, in the decompressed pack.
      const decoded = zstdDecompressSync(pack.source.bytes);
      expect(message.pack).toEqual({ size: pack.size, sha256: sha256(pack.source.bytes), encoding: "zstd", decodedSize: decoded.length });
      for (const put of puts) {
        if (put.content.kind !== "packed") throw new Error(`${put.path} is not packed`);
        expect(put.content.encoding).toBe("raw");
        expect(decoded.subarray(put.content.offset, put.content.offset + put.content.length).equals(files.get(put.path) ?? Buffer.alloc(0))).toBe(true);
      }
      // Each slice is its file once decoded: the applier's own reading of it.
      const store = new MemoryStore();
      await store.put(pack.key, pack.source.bytes);
      const applier = new Applier({ store, log: () => {} });
      const outcome = await applier.applyMessage(signedIncoming("m1", SET, packed.body));
      expect(outcome).toMatchObject({ kind: "applied", records: 401 });
      for (const [path, bytes] of files) expect((await store.get(`data/${SET}/${path}`))?.body.equals(bytes)).toBe(true);
      // The pack goes once the checkpoint covers the message, as staged payloads do.
      expect(await store.get(pack.key)).toBeUndefined();
    }),
  );

  it(
    "compresses each file on its own, the form every applier reads, unless told the applier reads whole packs",
    withJournal(async (journal) => {
      const files = journalFiles(journal, 400, 8 * 1024);
      const packed = packNext(journal, SET);
      if (!packed) throw new Error("nothing was packed");
      const message = parseMessage(packed.body) as WireMessage;
      const pack = packed.staged.find((payload) => payload.pack === true);
      if (!pack || !("bytes" in pack.source)) throw new Error("the pack is not staged with the message");
      expect(message.pack).toEqual({ size: pack.size, sha256: sha256(pack.source.bytes) });
      const puts = message.records.filter((r) => r.op === "put");
      expect(puts.length).toBe(400);
      // The text files compress, each in its own slice; the random ones go as they are.
      for (const put of puts) {
        if (put.content.kind !== "packed") throw new Error(`${put.path} is not packed`);
        const slice = pack.source.bytes.subarray(put.content.offset, put.content.offset + put.content.length);
        const bytes = put.content.encoding === "zstd" ? zstdDecompressSync(slice) : Buffer.from(slice);
        expect(bytes.equals(files.get(put.path) ?? Buffer.alloc(0))).toBe(true);
      }
      expect(puts.filter((put) => put.content.kind === "packed" && put.content.encoding === "zstd").length).toBe(200);
      const store = new MemoryStore();
      await store.put(pack.key, pack.source.bytes);
      expect(await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m1", SET, packed.body))).toMatchObject({ kind: "applied", records: 401 });
      for (const [path, bytes] of files) expect((await store.get(`data/${SET}/${path}`))?.body.equals(bytes)).toBe(true);
    }),
  );

  it(
    "stores the pack as it is when compression is off",
    withJournal(async (journal) => {
      const files = journalFiles(journal, 400, 8 * 1024);
      const packed = packNext(journal, SET, { compression: "none", wholePacks: true });
      const message = parseMessage(packed?.body ?? "") as WireMessage;
      const pack = packed?.staged.find((payload) => payload.key === stagingKey(SET, packed.first, message.pack?.sha256 ?? ""));
      if (!pack || !("bytes" in pack.source)) throw new Error("the pack is not staged with the message");
      expect(message.pack).toEqual({ size: pack.size, sha256: sha256(pack.source.bytes) });
      expect(Buffer.from(pack.source.bytes).equals(Buffer.concat([...files.values()]))).toBe(true);
    }),
  );

  it(
    "sends a lone change inline, without a pack",
    withJournal(async (journal) => {
      journalFiles(journal, 3, 1024);
      const packed = packNext(journal, SET);
      const message = parseMessage(packed?.body ?? "") as WireMessage;
      expect(message.pack).toBeUndefined();
      expect(message.records.every((r) => r.op !== "put" || r.content.kind === "inline")).toBe(true);
      expect(packed?.staged).toEqual([]);
    }),
  );

  it(
    "replicates a whole backlog through packs, in order, to the byte",
    withJournal(async (journal) => {
      const files = journalFiles(journal, 1500, 6 * 1024);
      const store = new MemoryStore();
      const transport = new MemoryTransport(new Applier({ store, log: () => {} }), store);
      while ((await sendNext(journal, transport, SET, { wholePacks: true })).records > 0);
      expect(transport.outcomes.every((o) => o.kind === "applied")).toBe(true);
      // A few messages, not the ~150 that inline content would take.
      expect(transport.bodies.length).toBeLessThan(10);
      for (const [path, bytes] of files) expect((await store.get(`data/${SET}/${path}`))?.body.equals(bytes)).toBe(true);
      expect([...store.objects.keys()].filter((key) => key.startsWith("staging/"))).toEqual([]);
    }),
  );
});

describe("a pack the target refuses for good", () => {
  it(
    "sends the same records without a pack, none of them skipped",
    withJournal(async (journal) => {
      const files = journalFiles(journal, 300, 6 * 1024);
      const store = new MemoryStore();
      const inner = new MemoryTransport(new Applier({ store, log: () => {} }), store);
      const refused: string[] = [];
      // Only packs are staged here (every file is small): each is refused, as a store that never takes it would.
      const transport: Transport = {
        stage: async (payload) => {
          refused.push(payload.key);
          throw new DeliveryRefusedError(`refusing ${payload.key}`);
        },
        send: (set, id, body, attributes) => inner.send(set, id, body, attributes),
      };
      while ((await sendNext(journal, transport, SET)).records > 0);
      expect(refused.length).toBeGreaterThan(0);
      expect(journal.skipped(SET)).toEqual([]);
      expect(inner.outcomes.every((o) => o.kind === "applied")).toBe(true);
      for (const [path, bytes] of files) expect((await store.get(`data/${SET}/${path}`))?.body.equals(bytes)).toBe(true);
    }),
  );
});

describe("the applier reading a message's pack", () => {
  const content = Buffer.from("the bytes of a small file, packed");
  const record: WireRecord = { seq: 1, op: "put", path: "a.txt", size: content.length, mode: 0o644, mtimeNs: "1", sha256: sha256(content), content: { kind: "packed", encoding: "raw", offset: 0, length: content.length } };
  const body = (pack: { size: number; sha256: string; encoding?: string; decodedSize?: number }) => JSON.stringify({ ...JSON.parse(messageBody(SET, [record])), pack });

  it("rejects a pack that is not what the signed message names, and writes nothing", async () => {
    const store = new MemoryStore();
    const forged = Buffer.from("other bytes of the same length!!!");
    await store.put(stagingKey(SET, 1, sha256(content)), forged);
    const outcome = await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m1", SET, body({ size: content.length, sha256: sha256(content) })));
    expect(outcome).toMatchObject({ kind: "rejected" });
    expect((outcome as { error: string }).error).toMatch(/pack .* has sha256 .*, not the/);
    expect(await store.get(`data/${SET}/a.txt`)).toBeUndefined();
  });

  it("rejects a message whose pack is missing", async () => {
    const store = new MemoryStore();
    const outcome = await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m1", SET, body({ size: content.length, sha256: sha256(content) })));
    expect((outcome as { error: string }).error).toMatch(/pack is missing at staging\/docs\/1\./);
  });

  it("refuses packed content past the end of the pack, or without one, when parsing", () => {
    expect(() => parseMessage(body({ size: content.length - 1, sha256: sha256(content) }))).toThrow(/packed content ends past the pack's/);
    expect(() => parseMessage(messageBody(SET, [record]))).toThrow(/packed content in a message without a pack/);
    // A compressed pack: the slices index its decompressed bytes, whose size the message names with the encoding.
    const zipped = zstdCompressSync(content);
    expect(() => parseMessage(body({ size: zipped.length, sha256: sha256(zipped), encoding: "zstd", decodedSize: content.length - 1 }))).toThrow(/packed content ends past the pack's/);
    expect(() => parseMessage(body({ size: content.length + 10, sha256: sha256(zipped), encoding: "zstd" }))).toThrow(/encoding and decodedSize go together/);
  });

  it("applies a pack of an older agent: not compressed as a whole, each slice compressed on its own", async () => {
    const text = Buffer.from("an older agent's file, compressed on its own ".repeat(20));
    const slices = [zstdCompressSync(text), content];
    const records: WireRecord[] = [
      { seq: 1, op: "put", path: "old.txt", size: text.length, mode: 0o644, mtimeNs: "1", sha256: sha256(text), content: { kind: "packed", encoding: "zstd", offset: 0, length: slices[0]?.length ?? 0 } },
      { ...record, seq: 2, content: { kind: "packed", encoding: "raw", offset: slices[0]?.length ?? 0, length: content.length } },
    ];
    const stored = Buffer.concat(slices);
    const store = new MemoryStore();
    await store.put(stagingKey(SET, 1, sha256(stored)), stored);
    const old = JSON.stringify({ ...JSON.parse(messageBody(SET, records)), pack: { size: stored.length, sha256: sha256(stored) } });
    const outcome = await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m1", SET, old));
    expect(outcome).toMatchObject({ kind: "applied", records: 2 });
    expect((await store.get(`data/${SET}/old.txt`))?.body.equals(text)).toBe(true);
    expect((await store.get(`data/${SET}/a.txt`))?.body.equals(content)).toBe(true);
  });

  it("rejects a compressed pack that does not decompress to the size its message names, and writes nothing", async () => {
    const zipped = zstdCompressSync(Buffer.concat([content, Buffer.from("and more")]));
    for (const pack of [
      { size: zipped.length, sha256: sha256(zipped), encoding: "zstd", decodedSize: content.length },
      { size: zipped.length, sha256: sha256(zipped), encoding: "zstd", decodedSize: content.length + 100 },
    ]) {
      const store = new MemoryStore();
      await store.put(stagingKey(SET, 1, sha256(zipped)), zipped);
      const outcome = await new Applier({ store, log: () => {} }).applyMessage(signedIncoming("m1", SET, body(pack)));
      expect(outcome).toMatchObject({ kind: "rejected" });
      expect((outcome as { error: string }).error).toMatch(/pack at staging\/docs\/1\..* (does not decompress|decompresses \(zstd\) to \d+ bytes, not the)/);
      expect(await store.get(`data/${SET}/a.txt`)).toBeUndefined();
    }
  });
});
