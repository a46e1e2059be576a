import { randomBytes } from "node:crypto";
import { zstdCompressSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { setNameProblem, setPathProblem } from "../../contract/paths.ts";
import { BadMessageError, decodeInline, encodeInline, parseMessage, serializeMessage, type WireMessage } from "../../contract/wire.ts";

const sha = "a".repeat(64);

function message(records: unknown[], set = "docs"): string {
  return JSON.stringify({ v: 1, set, records });
}

describe("set paths", () => {
  it.each([
    ["..", "'..' segment"],
    ["a/../../etc/passwd", "'..' segment"],
    ["./a", "'.' segment"],
    ["/etc/passwd", "absolute"],
    ["a\0b", "NUL"],
    ["a\\..\\b", "backslash"],
    ["a//b", "empty segment"],
    ["a/", "empty segment"],
    ["", "empty"],
    ["C:/Windows", "drive letter"],
    ["a\nb", "control character"],
    ["x".repeat(901), "longer than"],
  ])("rejects %j", (path, why) => {
    expect(setPathProblem(path)).toContain(why);
  });

  it.each(["a", "a/b/c.txt", "with space/ünïcödé ✓.md", ".hidden", "a..b", "...", "-rf"])("accepts %j", (path) => {
    expect(setPathProblem(path)).toBeUndefined();
  });

  it("rejects set names that could escape a prefix or a message group", () => {
    expect(setNameProblem("../x")).toBeDefined();
    expect(setNameProblem("a/b")).toBeDefined();
    expect(setNameProblem("a..b")).toBeDefined();
    expect(setNameProblem("")).toBeDefined();
    expect(setNameProblem("x".repeat(65))).toBeDefined();
    expect(setNameProblem("web-01.data_2")).toBeUndefined();
  });
});

describe("markers sent straight to the queue", () => {
  it("accepts the README's console marker, filling in the defaults", () => {
    expect(parseMessage('{"v":1,"set":"db","task":{"action":"snapshot","label":"before-upgrade"}}')).toEqual({
      v: 1,
      set: "db",
      task: { action: "snapshot", label: "before-upgrade", timeoutSeconds: 300 },
    });
    expect(parseMessage('{"v":1,"set":"db","task":{}}')).toMatchObject({ task: { action: "snapshot" } });
  });

  it.each([
    ["an unknown action", { action: "format-disk" }, /task\.action/],
    ["an unknown field", { action: "snapshot", command: "rm -rf /" }, /task/],
    ["a timeout past Lambda's limit", { timeoutSeconds: 3600 }, /task\.timeoutSeconds/],
    ["an id that could leave tasks/<set>/", { id: "../../state/db/status" }, /task\.id/],
  ])("rejects %s", (_what, task, pattern) => {
    expect(() => parseMessage(JSON.stringify({ v: 1, set: "db", task }))).toThrow(pattern);
  });
});

describe("wire messages", () => {
  const put = { seq: 1, op: "put", path: "a.txt", size: 2, mode: 0o644, mtimeNs: "1", sha256: sha, content: { kind: "staged" } };

  it("carries when a record was journaled, optionally: a whole number of ms, never negative", () => {
    const body = (at: unknown) => JSON.stringify({ v: 1, set: "docs", records: [{ ...put, ...(at === undefined ? {} : { at }) }] });
    expect(parseMessage(body(1_764_500_000_000))).toMatchObject({ records: [{ at: 1_764_500_000_000 }] });
    expect(parseMessage(body(undefined))).toMatchObject({ records: [{ seq: 1 }] });
    expect(() => parseMessage(body(-1))).toThrow(BadMessageError);
    expect(() => parseMessage(body("yesterday"))).toThrow(/records\.0\.at/);
  });

  it("round-trips a valid message", () => {
    const valid: WireMessage = {
      v: 1,
      set: "docs",
      records: [
        { seq: 7, op: "mkdir", path: "d", mode: 0o755, mtimeNs: "123" },
        { seq: 8, op: "put", path: "d/f", size: 3, mode: 0o600, mtimeNs: "124", sha256: sha, content: encodeInline(Buffer.from("abc")) },
        { seq: 9, op: "symlink", path: "d/l", target: "../f", mtimeNs: "125" },
        { seq: 10, op: "delete", path: "old" },
        { seq: 11, op: "rename", from: "x", to: "y" },
        { seq: 12, op: "resync", reason: "test" },
        { seq: 13, op: "task", id: "20261125T010203Z-abc123", action: "invoke", timeoutSeconds: 30, function: "f", label: "nightly" },
        { seq: 14, op: "prune", id: "p-1", keep: 3 },
      ],
    };
    expect(parseMessage(serializeMessage(valid))).toEqual(valid);
  });

  it("carries a put's hard-link group when it has one, and refuses a malformed one", () => {
    expect(parseMessage(message([{ ...put, linkGroup: "0123456789abcdef" }]))).toMatchObject({ records: [{ linkGroup: "0123456789abcdef" }] });
    expect(() => parseMessage(message([{ ...put, linkGroup: "../../x" }]))).toThrow(/records.0.linkGroup/);
  });

  it("carries a drill's report, and refuses one whose id could leave drills/<set>/", () => {
    const report = {
      id: "20261130T120000Z-abcdef",
      set: "docs",
      passed: true,
      startedAt: "2026-11-30T12:00:00.000Z",
      finishedAt: "2026-11-30T12:00:01.000Z",
      recoveryPoint: { kind: "snapshot", id: "snap-x", takenAt: "2026-11-30T11:00:00.000Z" },
      rto: { restoreMs: 1, verifyMs: 1, checkMs: 0, totalMs: 2 },
      rpo: { ageMs: 10, lagMs: null },
      entries: 0,
      bytes: 0,
      problems: [],
      problemCount: 0,
      scratch: { path: "/tmp/x", kept: false },
    };
    expect(parseMessage(message([{ seq: 1, op: "drill", report }]))).toMatchObject({ records: [{ op: "drill", report }] });
    expect(() => parseMessage(message([{ seq: 1, op: "drill", report: { ...report, id: "../../state/docs/status" } }]))).toThrow(/report.id/);
  });

  it("writes characters beyond U+FFFF as escapes, which read back the same (the local emulator refuses them raw)", () => {
    const message: WireMessage = { v: 1, set: "docs", records: [{ seq: 1, op: "mkdir", path: "😀 𝄞 日本 \"q\"", mode: 0o755, mtimeNs: "1" }] };
    const text = serializeMessage(message);
    expect(text).not.toMatch(/[\u{10000}-\u{10FFFF}]/u);
    expect(text).toContain("\\ud83d\\ude00");
    expect(text).toContain("日本");
    expect(parseMessage(text)).toEqual(message);
  });

  it.each([
    ["not JSON", "{", /not JSON/],
    ["another version", JSON.stringify({ v: 2, set: "docs", records: [] }), /unsupported wire version 2/],
    ["no records", message([]), /records/],
    ["a hostile path", message([{ ...put, path: "../../etc/cron.d/x" }]), /records\.0\.path: path has a '\.\.' segment/],
    ["an absolute path", message([{ ...put, path: "/etc/passwd" }]), /absolute/],
    ["a NUL in a path", message([{ ...put, path: "a\u0000b" }]), /NUL/],
    ["a backslash path", message([{ ...put, path: "..\\..\\x" }]), /backslash/],
    ["a hostile rename target", message([{ seq: 1, op: "rename", from: "a", to: "../b" }]), /records\.0\.to/],
    ["a hostile set", message([put], "../other"), /set/],
    ["an unknown op", message([{ seq: 1, op: "chmod", path: "a" }]), /op/],
    ["a bad hash", message([{ ...put, sha256: "xyz" }]), /sha256/],
    ["a negative seq", message([{ ...put, seq: -1 }]), /seq/],
    ["non-contiguous seqs", message([put, { ...put, seq: 3 }]), /contiguous/],
    ["a staged key from the sender", message([{ ...put, content: { kind: "staged", key: "data/other/x" } }]), null],
  ])("rejects %s", (_what, body, pattern) => {
    if (pattern === null) {
      // Extra keys are dropped by the schema: the applier derives the staging key itself.
      expect(parseMessage(body)).not.toHaveProperty("records.0.content.key");
      return;
    }
    expect(() => parseMessage(body)).toThrow(BadMessageError);
    expect(() => parseMessage(body)).toThrow(pattern);
  });

  it.each([
    ["zstd", "zstd+base64"],
    ["gzip", "gzip+base64"],
  ] as const)("compresses inline content with %s only when it helps", (compression, encoding) => {
    const text = Buffer.from("hello ".repeat(1000));
    const packed = encodeInline(text, compression);
    expect(packed.encoding).toBe(encoding);
    expect(Buffer.from(packed.data, "base64").length).toBeLessThan(text.length / 10);
    expect(decodeInline(packed)).toEqual(text);
    const random = randomBytes(4096);
    const raw = encodeInline(random, compression);
    expect(raw.encoding).toBe("base64");
    expect(decodeInline(raw)).toEqual(random);
  });

  it("sends content as it is with compression off", () => {
    const text = Buffer.from("hello ".repeat(1000));
    expect(encodeInline(text, "none").encoding).toBe("base64");
  });

  it.each(["gzip+base64", "zstd+base64"] as const)("refuses inline content that does not decompress (%s)", (encoding) => {
    expect(() => decodeInline({ kind: "inline", encoding, data: "bm90IGNvbXByZXNzZWQ=" })).toThrow(BadMessageError);
  });

  it("refuses a compressed payload that expands past the inline limit", () => {
    const bomb = zstdCompressSync(Buffer.alloc(8 * 1024 * 1024));
    expect(() => decodeInline({ kind: "inline", encoding: "zstd+base64", data: bomb.toString("base64") })).toThrow(/does not decompress/);
  });
});
