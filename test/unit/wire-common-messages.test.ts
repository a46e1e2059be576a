// parseMessage checks the common message (puts and folders) by hand instead
// of through the zod schema: the same messages pass, into the same object
// (keys and their order), and whatever the schema refuses goes to the schema,
// so a refusal's error is the schema's. Each valid message below is parsed,
// then altered one field at a time in ways the schema accepts or refuses.

import { afterEach, describe, expect, it, vi } from "vitest";
import { z } from "zod";
import { LINK_GROUP_PATTERN, MTIME_NS_PATTERN, SHA256_PATTERN } from "../../contract/manifest-entry.ts";
import { PACK_ENCODINGS, PACKED_ENCODINGS } from "../../contract/packed-content.ts";
import { BadMessageError, GENERATION_ID_PATTERN, HAND_CHECKED_KEYS, INLINE_ENCODINGS, MAX_MESSAGE_BYTES, MessageSchema, parseMessage, recordPathOf } from "../../contract/wire.ts";

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
  [
    "files and folders touched before 1970 (negative mtimes), at the epoch, and one nanosecond before it",
    {
      v: 1,
      set: "old",
      records: [
        { op: "mkdir", path: "times", mode: 0o755, mtimeNs: "-315619200000000000", seq: 1 },
        put(2, { kind: "inline", encoding: "base64", data: "" }, { mtimeNs: "-1" }),
        put(3, { kind: "staged" }, { mtimeNs: "0" }),
        put(4, { kind: "staged" }, { mtimeNs: "-9999999999999999999999999999" }),
        put(5, { kind: "staged" }, { mtimeNs: "100000000000000000000" }),
        put(6, { kind: "staged" }, { mtimeNs: "-1000000000" }),
      ],
    },
  ],
];

/** Ways to alter a field: values the schema takes and values it refuses. */
const BAD_VALUES: unknown[] = [null, true, -1, 0, 1.5, 2 ** 53, "", "x", "1", [], {}, [1], { kind: "packed" }, "é", "a/../b", "/abs", "0123456789ABCDEF".repeat(4), 8 * 1024 * 1024 + 1];
/** Signed decimal strings on both sides of mtimeNs's rule (a '-' before a non-zero digit, at most 28 digits). */
const SIGNED_VALUES: unknown[] = ["-1", "-0", "-01", "-", "--1", "+1", "- 1", "-1 ", "00", "-9".padEnd(29, "9"), "-9".padEnd(30, "9"), "9".repeat(28), "9".repeat(29), "-1e9", "-1.5"];

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
      for (const bad of [...BAD_VALUES, ...SIGNED_VALUES]) out.push(replace(copy(key, bad)));
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
  const path = recordPathOf(JSON.parse(body), issue?.path);
  return { error: `invalid message: ${issue?.path.length ? issue.path.join(".") : "message"}${path ? ` (path ${path})` : ""}: ${issue?.message ?? "does not match the schema"}${more}` };
}

function byParser(body: string): { message: string } | { error: string } {
  try {
    return { message: JSON.stringify(parseMessage(body)) };
  } catch (error) {
    if (!(error instanceof BadMessageError)) throw error;
    return { error: error.message };
  }
}

/*
 * The schema's own rules, read from it: a common message is walked beside MessageSchema, and each field's schema gives
 * its boundary values (a number's min - 1, min, max, max + 1; a string's and an array's lengths; an enum's values and
 * every encoding the hand checks know). A bound tightened in a schema but not in the hand checks makes one of these
 * variants accepted by the hand checks and refused by the schema.
 */

function unwrap(schema: z.ZodType): z.ZodType {
  let inner = schema;
  while (inner instanceof z.ZodOptional) inner = inner.unwrap() as z.ZodType;
  return inner;
}

/** The object schema that parses value: the schema itself, or the option of a discriminated union its discriminator picks. */
function objectSchema(schema: z.ZodType, value: unknown): z.ZodObject | undefined {
  const inner = unwrap(schema);
  if (inner instanceof z.ZodObject) return inner;
  if (inner instanceof z.ZodDiscriminatedUnion && typeof value === "object" && value !== null) {
    const discriminator = inner._zod.def.discriminator;
    const tag = (value as Json)[discriminator];
    return (inner.options as z.ZodType[]).map(unwrap).find((option): option is z.ZodObject => {
      const field = option instanceof z.ZodObject ? option.shape[discriminator] : undefined;
      return field instanceof z.ZodLiteral && field.values.has(tag as never);
    });
  }
  return undefined;
}

/** Each field of value (at every depth) with its schema, and a way to put another value in its place. */
function fields(value: unknown, schema: z.ZodType, replace: (next: unknown) => Json, out: { key: string; schema: z.ZodType; value: unknown; replace: (next: unknown) => Json }[] = []) {
  const inner = unwrap(schema);
  if (Array.isArray(value) && inner instanceof z.ZodArray) {
    value.forEach((item, i) => {
      const swap = (next: unknown) => replace(value.map((other, j) => (j === i ? next : other)));
      out.push({ key: String(i), schema: inner.element as z.ZodType, value: item, replace: swap });
      fields(item, inner.element as z.ZodType, swap, out);
    });
    return out;
  }
  const object = objectSchema(inner, value);
  if (!object || typeof value !== "object" || value === null) return out;
  for (const [key, field] of Object.entries(object.shape)) {
    const swap = (next: unknown) => replace({ ...(value as Json), [key]: next });
    out.push({ key, schema: field as z.ZodType, value: (value as Json)[key], replace: swap });
    fields((value as Json)[key], field as z.ZodType, swap, out);
  }
  return out;
}

type Check = { check: string; minimum?: number; maximum?: number; pattern?: RegExp };
const checksOf = (schema: z.ZodType): Check[] => ((schema._zod.def as { checks?: { _zod: { def: Check } }[] }).checks ?? []).map((c) => c._zod.def);
const ALL_ENCODINGS = [...new Set<string>([...INLINE_ENCODINGS, ...PACKED_ENCODINGS, ...PACK_ENCODINGS])];

/** The boundary values of a field's schema, read from it. */
function boundaries(schema: z.ZodType, value: unknown): unknown[] {
  const inner = unwrap(schema);
  if (inner instanceof z.ZodNumber) {
    const { minValue: min, maxValue: max } = inner;
    return [min, max].filter((bound): bound is number => bound !== null && Number.isFinite(bound)).flatMap((bound) => [bound - 1, bound, bound + 1]);
  }
  if (inner instanceof z.ZodString) {
    return [inner.minLength, inner.maxLength].filter((bound): bound is number => bound !== null).flatMap((bound) => [bound - 1, bound, bound + 1].filter((n) => n >= 0).map((n) => "a".repeat(n)));
  }
  if (inner instanceof z.ZodEnum) return [...new Set([...(inner.options as string[]), ...ALL_ENCODINGS])];
  if (inner instanceof z.ZodArray && Array.isArray(value) && value.length > 0) {
    const lengths = checksOf(inner).flatMap((c) => (c.check === "min_length" ? [c.minimum ?? 0] : c.check === "max_length" ? [c.maximum ?? 0] : [])).flatMap((n) => [n - 1, n, n + 1]);
    // Records as small as they come (the longest run stays under the body's limit), seqs following on: only the length is at stake.
    const first = value[0] as Json;
    const item = (i: number) => (typeof first.seq === "number" ? { seq: first.seq + i, op: "mkdir", path: "d", mode: 0, mtimeNs: "1" } : first);
    return lengths.filter((n) => n >= 0).map((n) => Array.from({ length: n }, (_, i) => item(i)));
  }
  return [];
}

/** The pattern the hand checks use for each field the schema checks with a regular expression. */
const HAND_PATTERNS: Record<string, RegExp> = { gen: GENERATION_ID_PATTERN, sha256: SHA256_PATTERN, mtimeNs: MTIME_NS_PATTERN, linkGroup: LINK_GROUP_PATTERN };

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

  it.each(VALID)("accepts and refuses the boundary values the schema gives each field of %s as the schema does", (_what, message) => {
    let refused = 0;
    let taken = 0;
    for (const field of fields(message, MessageSchema, (next) => next as Json)) {
      for (const value of boundaries(field.schema, field.value)) {
        const body = JSON.stringify(field.replace(value));
        const expected = bySchema(body);
        const got = byParser(body);
        const short = (result: object) => JSON.stringify(result).slice(0, 300);
        if (JSON.stringify(got) !== JSON.stringify(expected)) expect.fail(`${field.key} = ${JSON.stringify(value)?.slice(0, 80)}: parseMessage gives ${short(got)}, the schema ${short(expected)}`);
        if ("error" in expected) refused += 1;
        else taken += 1;
      }
    }
    expect(refused).toBeGreaterThan(20);
    expect(taken).toBeGreaterThan(20);
  });

  it("checks by hand with the patterns the schema checks with", () => {
    let seen = 0;
    for (const [, message] of VALID) {
      for (const field of fields(message, MessageSchema, (next) => next as Json)) {
        const patterns = checksOf(unwrap(field.schema)).flatMap((c) => (c.pattern ? [c.pattern] : []));
        if (patterns.length === 0) continue;
        seen += 1;
        expect(patterns, field.key).toEqual([HAND_PATTERNS[field.key]]);
      }
    }
    expect(seen).toBeGreaterThan(10);
  });

  it("knows by hand the keys the schema names, for each object of a common message (a put's delta left to the schema)", () => {
    const shapes = new Map<string, string[]>();
    for (const [, message] of VALID) {
      shapes.set("message", Object.keys(MessageSchema.shape));
      for (const field of fields(message, MessageSchema, (next) => next as Json)) {
        const object = objectSchema(field.schema, field.value);
        if (!object || typeof field.value !== "object" || field.value === null) continue;
        const value = field.value as Json;
        const name = field.key === "pack" ? "pack" : typeof value.op === "string" ? value.op : (value.kind as string);
        shapes.set(name, Object.keys(object.shape).filter((key) => !(name === "put" && key === "delta")));
      }
    }
    expect(Object.fromEntries(shapes)).toEqual(HAND_CHECKED_KEYS);
  });

  it("leaves what is not common to the schema: another op, a delta, a key it does not name", () => {
    const schema = vi.spyOn(MessageSchema, "safeParse");
    for (const records of [[{ op: "delete", path: "x", seq: 1 }], [{ ...put(1, packed(0, 1)), delta: { base: SHA, blocks: [] } }], [{ ...put(1, { kind: "staged" }), note: "extra" }]]) {
      parseMessage(JSON.stringify({ v: 1, set: "docs", pack: { size: 1, sha256: SHA }, records }));
    }
    expect(schema).toHaveBeenCalledTimes(3);
  });
});
