// parseMessage checks the common message (puts and folders) by hand instead
// of through the zod schema: the same messages pass, into the same object
// (keys and their order), and whatever the schema refuses goes to the schema,
// so a refusal's error is the schema's. Each valid message below is parsed,
// then altered one field at a time in ways the schema accepts or refuses.

import { afterEach, describe, expect, it, vi } from "vitest";
import { BadMessageError, MAX_MESSAGE_BYTES, MessageSchema, parseMessage } from "../../contract/wire.ts";

const SHA = "0123456789abcdef".repeat(4);

type Json = Record<string, unknown>;

function put(seq: number, content: Json, extra: Json = {}): Json {
  return { op: "put", path: `d${seq % 3}/f${seq}.dat`, size: 42, mode: 0o644, mtimeNs: `${1_700_000_000_000_000_000n + BigInt(seq)}`, sha256: SHA, at: 1_764_000_000_000 + seq, seq, content, ...extra };
}

const packed = (offset: number, length: number, encoding = "raw"): Json => ({ kind: "packed", encoding, offset, length });

/** Messages of the common shape, as agents of each age send them. */
const VALID: [string, Json][] = [
  [
    "a packed message with a compressed pack",
    { v: 1, set: "docs", gen: "abc123", pack: { size: 500, sha256: SHA, encoding: "zstd", decodedSize: 1000 }, records: [put(7, packed(0, 10)), put(8, packed(10, 990, "zstd")), put(9, { kind: "inline", encoding: "zstd+base64", data: "KLUv/QBYAQAAYQ==" })] },
  ],
  ["an older agent's pack (no encoding), no generation", { v: 1, set: "a.b-c_d", pack: { size: 100, sha256: SHA }, records: [put(1, packed(0, 100, "gzip")), put(2, packed(100, 0))] }],
  [
    "folders and inline puts, records without at, a link group, staged content",
    {
      v: 1,
      set: "docs",
      gen: "Z9",
      records: [
        { op: "mkdir", path: "d0", mode: 0o755, mtimeNs: "1", seq: 3 },
        { op: "mkdir", path: "d0/e", mode: 0, mtimeNs: "99999999999999999999", at: 0, seq: 4 },
        put(5, { kind: "inline", encoding: "base64", data: "" }, { linkGroup: "0123456789abcdef" }),
        { ...put(6, { kind: "staged" }), at: undefined },
        put(7, { kind: "inline", encoding: "gzip+base64", data: "H4sIAAAAAAAAAwMAAAAAAAAAAAA=" }, { size: 0, mode: 0o7777 }),
      ],
    },
  ],
];

/** Ways to alter a field: values the schema takes and values it refuses. */
const BAD_VALUES: unknown[] = [null, true, -1, 0, 1.5, 2 ** 53, "", "x", "1", [], {}, [1], { kind: "packed" }, "é", "a/../b", "/abs", "0123456789ABCDEF".repeat(4), 8 * 1024 * 1024 + 1];

/** Every variant of message: each field (at every depth) set to each bad value, removed, and a key added beside it. */
function variants(message: Json): Json[] {
  const out: Json[] = [];
  const walk = (value: unknown, replace: (next: unknown) => Json) => {
    if (typeof value !== "object" || value === null) return;
    const entries = Array.isArray(value) ? [...value.entries()].map(([i, v]) => [String(i), v] as const) : Object.entries(value);
    const copy = (key: string, next: unknown, remove = false): unknown => {
      if (Array.isArray(value)) {
        const array = [...value];
        if (remove) array.splice(Number(key), 1);
        else array[Number(key)] = next;
        return array;
      }
      if (remove) return Object.fromEntries(Object.entries(value as Json).filter(([name]) => name !== key));
      return { ...(value as Json), [key]: next };
    };
    if (!Array.isArray(value)) out.push(replace({ ...(value as Json), unexpected: 1 }));
    for (const [key, field] of entries) {
      for (const bad of BAD_VALUES) out.push(replace(copy(key, bad)));
      out.push(replace(copy(key, undefined, true)));
      walk(field, (next) => replace(copy(key, next)));
    }
  };
  walk(message, (next) => next as Json);
  // Messages-wide rules: seqs must follow on, packed content must lie inside the pack.
  const records = message.records as Json[];
  out.push({ ...message, records: [...records].reverse() });
  out.push({ ...message, records: records.map((r) => ({ ...r, seq: (r.seq as number) * 2 })) });
  out.push({ ...message, pack: undefined });
  // A pack one byte short of the last slice; inline data one character over the limit.
  const pack = message.pack as Json | undefined;
  if (pack) out.push({ ...message, pack: pack.decodedSize === undefined ? { ...pack, size: (pack.size as number) - 1 } : { ...pack, decodedSize: (pack.decodedSize as number) - 1 } });
  // A pack's encoding and decoded size go together (each alone, the slices still inside the pack).
  const bytes = (pack?.decodedSize ?? pack?.size ?? 0) as number;
  if (pack) out.push({ ...message, pack: { size: bytes, sha256: SHA, encoding: "gzip" } }, { ...message, pack: { size: bytes, sha256: SHA, decodedSize: bytes } });
  // Seqs that follow on from 0 (seqs start at 1).
  const first = records[0]?.seq as number;
  out.push({ ...message, records: records.map((r) => ({ ...r, seq: (r.seq as number) - first })) });
  const inline = records.findIndex((r) => (r.content as Json | undefined)?.kind === "inline");
  if (inline >= 0) out.push({ ...message, records: records.map((r, i) => (i === inline ? { ...r, content: { ...(r.content as Json), data: "A".repeat(MAX_MESSAGE_BYTES + 1) } } : r)) });
  out.push({ ...message, records: [...records, { op: "delete", path: "x", seq: (records.at(-1)?.seq as number) + 1 }] });
  out.push({ ...message, records: [...records, { ...put((records.at(-1)?.seq as number) + 1, packed(0, 1)), delta: { base: SHA, blocks: [] } }] });
  return out;
}

/** What the schema alone makes of a body: the parsed message, or the error parseMessage names. */
function bySchema(body: string): { message: string } | { error: string } {
  const result = MessageSchema.safeParse(JSON.parse(body));
  if (result.success) return { message: JSON.stringify(result.data) };
  const issue = result.error.issues[0];
  const more = result.error.issues.length > 1 ? ` (and ${result.error.issues.length - 1} more problems)` : "";
  return { error: `invalid message: ${issue?.path.length ? issue.path.join(".") : "message"}: ${issue?.message ?? "does not match the schema"}${more}` };
}

function byParser(body: string): { message: string } | { error: string } {
  try {
    return { message: JSON.stringify(parseMessage(body)) };
  } catch (error) {
    if (!(error instanceof BadMessageError)) throw error;
    return { error: error.message };
  }
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe("parseMessage on common messages", () => {
  it.each(VALID)("parses %s without the schema, into the object the schema gives", (_what, message) => {
    const body = JSON.stringify(message);
    const expected = bySchema(body);
    expect(expected).toHaveProperty("message");
    const schema = vi.spyOn(MessageSchema, "safeParse");
    expect(byParser(body)).toEqual(expected);
    expect(schema).not.toHaveBeenCalled();
  });

  it.each(VALID)("accepts and refuses every variant of %s as the schema does, with the schema's error", (_what, message) => {
    let refused = 0;
    let taken = 0;
    for (const variant of variants(message)) {
      const body = JSON.stringify(variant);
      if (JSON.parse(body)?.v !== 1) continue;
      const expected = bySchema(body);
      expect(byParser(body), body).toEqual(expected);
      if ("error" in expected) refused += 1;
      else taken += 1;
    }
    // The variants reach both sides of the schema's rules.
    expect(refused).toBeGreaterThan(100);
    expect(taken).toBeGreaterThan(5);
  });

  it("leaves what is not common to the schema: another op, a delta, a key it does not name", () => {
    const schema = vi.spyOn(MessageSchema, "safeParse");
    for (const records of [[{ op: "delete", path: "x", seq: 1 }], [{ ...put(1, packed(0, 1)), delta: { base: SHA, blocks: [] } }], [{ ...put(1, { kind: "staged" }), note: "extra" }]]) {
      parseMessage(JSON.stringify({ v: 1, set: "docs", pack: { size: 1, sha256: SHA }, records }));
    }
    expect(schema).toHaveBeenCalledTimes(3);
  });
});
