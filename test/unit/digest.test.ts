// The marker digest both sides compute (contract/digest.ts): its canonical
// lines, byte order of paths, what it leaves out, and the per-path differences.

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { compareBytes, digestDifferences, digestLine, DigestOrderError, FileDigestBuilder, fileSetDigest, sameDigest, volumeDigest, type DigestEntry } from "../../contract/digest.ts";

const SHA_A = "a".repeat(64);
const SHA_B = "b".repeat(64);

const entries: DigestEntry[] = [
  { path: "docs", kind: "dir", size: 0, mode: 0o755, mtimeNs: "1700000000000000000" },
  { path: "docs/a.txt", kind: "file", size: 5, mode: 0o644, mtimeNs: "1700000000123456789", sha256: SHA_A },
  { path: "docs/\u{1F600}.txt", kind: "file", size: 7, mode: 0o600, mtimeNs: "1700000000000000001", sha256: SHA_B },
  { path: "docs/\uFF5E.txt", kind: "file", size: 0, mode: 0o644, mtimeNs: "1", sha256: SHA_A },
  { path: "link", kind: "symlink", size: 0, mode: 0o777, mtimeNs: "2", link: "docs/a.txt" },
];

describe("the marker digest", () => {
  it("is one canonical JSON line per entry: path, kind, size, mode, mtime, and the sha256 or link target", () => {
    expect(digestLine(entries[1] as DigestEntry)).toBe(`["docs/a.txt","file",5,420,"1700000000123456789","${SHA_A}"]`);
    expect(digestLine(entries[0] as DigestEntry)).toBe(`["docs","dir",0,493,"1700000000000000000",""]`);
    expect(digestLine(entries[4] as DigestEntry)).toBe(`["link","symlink",0,511,"2","docs/a.txt"]`);
  });

  it("orders paths by their UTF-8 bytes, not by UTF-16 units, and is the same in any input order", () => {
    // U+FF5E sorts after U+1F600's surrogates in UTF-16, before its 4-byte UTF-8 form.
    expect("docs/\uFF5E.txt" < "docs/\u{1F600}.txt").toBe(false);
    expect(compareBytes("docs/\uFF5E.txt", "docs/\u{1F600}.txt")).toBeLessThan(0);
    const digest = fileSetDigest(entries);
    expect(fileSetDigest([...entries].reverse())).toEqual(digest);
    expect(digest).toMatchObject({ entries: 5, files: 3, bytes: 12 });
    expect(digest.sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it("compares like the UTF-8 bytes whatever the strings hold: surrogate pairs, lone surrogates, prefixes", () => {
    const samples = ["", "a", "ab", "a/b", "a0", "\u00e9", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uff5e", "\uffff", "\u{10000}", "\u{1f600}", "\u{10ffff}", "\ud83d", "\ude00", "x\ud83d", "x\ud83d\ude00", "x\ud83dy", "x\ufffd", "x\ufffdz", "\ud83d\ud83d"];
    const bytes = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
    for (const a of samples) for (const b of samples) expect(compareBytes(a, b), JSON.stringify([a, b])).toBe(bytes(a, b));
  });

  it("hashes exactly its lines, however many (they are hashed in batches)", () => {
    const many: DigestEntry[] = Array.from({ length: 3_000 }, (_, i) => ({ path: `d/f${String(i).padStart(5, "0")}`, kind: "file", size: i, mode: 0o644, mtimeNs: String(i), sha256: SHA_A }));
    const builder = new FileDigestBuilder();
    for (const entry of many) builder.add(entry);
    const lines = many.map((entry) => `${digestLine(entry)}\n`).join("");
    expect(lines.length).toBeGreaterThan(3 * 65_536);
    expect(builder.digest().sha256).toBe(createHash("sha256").update(lines).digest("hex"));
  });

  it("refuses entries out of byte order or twice, when built incrementally from an index", () => {
    const builder = new FileDigestBuilder();
    builder.add(entries[1] as DigestEntry);
    expect(() => builder.add(entries[0] as DigestEntry)).toThrow(DigestOrderError);
    expect(() => builder.add(entries[1] as DigestEntry)).toThrow(DigestOrderError);
  });

  it("changes with any field it covers, and not with where bytes live (object versions, block hashes)", () => {
    const digest = fileSetDigest(entries);
    const changed = (i: number, change: Partial<DigestEntry>) => fileSetDigest(entries.map((e, k) => (k === i ? { ...e, ...change } : e)));
    for (const [i, change] of [
      [1, { size: 6 }],
      [1, { mode: 0o600 }],
      [1, { mtimeNs: "1700000000123456788" }],
      [1, { sha256: SHA_B }],
      [4, { link: "elsewhere" }],
      [0, { kind: "file", sha256: SHA_A }],
    ] as const) {
      expect(sameDigest(changed(i, change), digest), JSON.stringify(change)).toBe(false);
    }
    const located = entries.map((e) => ({ ...e, versionId: "v1", etag: '"x"', blocks: "AAAA" }));
    expect(fileSetDigest(located)).toEqual(digest);
    expect(sameDigest(fileSetDigest(entries.slice(1)), digest)).toBe(false);
  });

  it("names every path that differs, is missing, or is extra", () => {
    const target = [entries[0], { ...(entries[1] as DigestEntry), size: 4 }, entries[3], entries[4], { path: "zz", kind: "dir", size: 0, mode: 0o755, mtimeNs: "3" }] as DigestEntry[];
    expect(digestDifferences(entries, target)).toEqual([
      { path: "docs/a.txt", problem: expect.stringMatching(/^differs: the source has a file, 5 bytes, .*; the target a file, 4 bytes/) },
      { path: "docs/\u{1F600}.txt", problem: expect.stringContaining("missing on the target") },
      { path: "zz", problem: expect.stringContaining("not on the source") },
    ]);
  });

  it("covers a volume's blocks holding data, in index order, and its size", () => {
    const blocks = [
      { index: 2, sha256: SHA_B, size: 1000 },
      { index: 0, sha256: SHA_A, size: 524288 },
    ];
    const digest = volumeDigest(525288 + 524288, blocks);
    expect(digest).toMatchObject({ entries: 2, files: 0, bytes: 525288, volumeSize: 1049576 });
    expect(volumeDigest(1049576, [...blocks].reverse())).toEqual(digest);
    expect(sameDigest(volumeDigest(1049577, blocks), digest)).toBe(false);
    expect(sameDigest(volumeDigest(1049576, [{ ...blocks[0], index: 1 } as (typeof blocks)[0], blocks[1] as (typeof blocks)[0]]), digest)).toBe(false);
  });
});
