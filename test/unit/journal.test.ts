import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Journal, type Change } from "../../agent/journal.ts";
import { tempDir } from "../support/tree.ts";

const put = (path: string, text: string): Change => ({
  op: "put",
  path,
  size: text.length,
  mode: 0o644,
  mtimeNs: "1",
  sha256: "0".repeat(64),
  content: { bytes: Buffer.from(text) },
});

describe("journal", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.remove());

  it("gives each set its own contiguous seqs, in append order", () => {
    const journal = Journal.open(dir.path);
    expect(journal.append("a", [put("1", "x"), put("2", "y")])).toEqual([1, 2]);
    expect(journal.append("b", [put("1", "z")])).toEqual([1]);
    expect(journal.append("a", [{ op: "delete", path: "1" }])).toEqual([3]);
    expect(journal.pending("a", 0, 10).map((r) => [r.seq, r.op, "path" in r ? r.path : ""])).toEqual([
      [1, "put", "1"],
      [2, "put", "2"],
      [3, "delete", "1"],
    ]);
    journal.close();
  });

  it("stamps each record with when it was journaled, kept across a reopen (what restore --at goes by)", () => {
    let now = 1_764_500_000_000;
    const first = Journal.open(dir.path, { now: () => now });
    first.append("a", [put("1", "x"), put("2", "y")]);
    now += 250;
    first.append("a", [{ op: "delete", path: "1" }]);
    first.close();
    const again = Journal.open(dir.path);
    expect(again.pending("a", 0, 10).map((r) => [r.seq, r.at])).toEqual([
      [1, 1_764_500_000_000],
      [2, 1_764_500_000_000],
      [3, 1_764_500_000_250],
    ]);
    again.close();
  });

  it("keeps records and content across a reopen (durable before sent)", () => {
    const first = Journal.open(dir.path);
    first.append("a", [put("f", "content one"), { op: "mkdir", path: "d", mode: 0o755, mtimeNs: "5" }]);
    first.close();
    const again = Journal.open(dir.path);
    const records = again.pending("a", 0, 10);
    expect(records).toHaveLength(2);
    const record = records[0];
    expect(record?.op === "put" && "bytes" in record.content && Buffer.from(record.content.bytes).toString()).toBe("content one");
    expect(again.append("a", [put("g", "next")])).toEqual([3]);
    again.close();
  });

  it("drops records only when marked sent, and their spool files with them", () => {
    const journal = Journal.open(dir.path);
    writeFileSync(join(journal.spoolDir, "big"), "spooled");
    journal.append("a", [
      { op: "put", path: "big", size: 7, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { spool: "big" } },
      put("small", "s"),
    ]);
    journal.markSent("a", 1, 100);
    expect(existsSync(join(journal.spoolDir, "big"))).toBe(false);
    expect(journal.pending("a", 0, 10).map((r) => r.seq)).toEqual([2]);
    expect(journal.sets.counters("a")).toMatchObject({ nextSeq: 3, sentSeq: 1, backlogRecords: 1, backlogBytes: 1, messagesSent: 1, bytesSent: 100 });
    journal.close();
  });

  it("removes the spool files of exactly the records sent, whatever their paths hold", () => {
    const journal = Journal.open(dir.path);
    const spooled = (path: string, spool: string): Change => ({ op: "put", path, size: 7, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { spool } });
    for (const name of ["s1", "s2", "s3"]) writeFileSync(join(journal.spoolDir, name), "spooled");
    journal.append("a", [spooled('a "spool":"s3" b', "s1"), put('"spool":"s2"', "x"), spooled("later", "s2"), spooled("other", "s3")]);
    journal.markSent("a", 2, 100);
    expect(["s1", "s2", "s3"].filter((name) => existsSync(join(journal.spoolDir, name)))).toEqual(["s2", "s3"]);
    journal.markSent("a", 4, 100);
    expect(["s1", "s2", "s3"].filter((name) => existsSync(join(journal.spoolDir, name)))).toEqual([]);
    journal.close();
  });

  it("does not lose a seq when a transaction fails half-way", () => {
    const journal = Journal.open(dir.path);
    journal.append("a", [put("x", "1")]);
    const bad = { op: "put", path: "y", size: 1, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { bytes: Symbol("bad") } } as unknown as Change;
    expect(() => journal.append("a", [put("z", "2"), bad])).toThrow();
    expect(journal.pending("a", 0, 10).map((r) => r.seq)).toEqual([1]);
    expect(journal.index.entry("a", "z")).toBeUndefined();
    expect(journal.append("a", [put("z", "2")])).toEqual([2]);
    journal.close();
  });

  it("keeps the index in step with what was journaled", () => {
    const journal = Journal.open(dir.path);
    journal.append("a", [
      { op: "mkdir", path: "d", mode: 0o755, mtimeNs: "1" },
      put("d/f", "x"),
      { op: "mkdir", path: "d/e", mode: 0o700, mtimeNs: "2" },
      put("d/e/g", "y"),
      { op: "symlink", path: "l", target: "d/f", mtimeNs: "3" },
    ]);
    expect(journal.index.entry("a", "d/f")).toMatchObject({ kind: "file", size: 1 });
    expect(journal.index.children("a", "d").map((e) => e.path)).toEqual(["d/e", "d/f"]);
    expect(journal.index.descendants("a", "d").map((e) => e.path)).toEqual(["d/f", "d/e/g", "d/e"]);
    expect(journal.index.entry("a", "l")).toMatchObject({ kind: "symlink", link: "d/f" });
    journal.append("a", [{ op: "delete", path: "d/f" }]);
    expect(journal.index.entry("a", "d/f")).toBeUndefined();
    expect(journal.index.entryCount("a")).toBe(4);
    journal.close();
  });

  it("keeps the backlog counters equal to what the journal holds, across sends and a reopen", () => {
    const journal = Journal.open(dir.path);
    journal.append("a", [put("1", "xx"), put("2", "yyy"), { op: "delete", path: "1" }, put("3", "zzzz")]);
    expect(journal.sets.counters("a")).toMatchObject({ backlogRecords: 4, backlogBytes: 9 });
    journal.markSent("a", 2, 100);
    expect(journal.sets.counters("a")).toMatchObject({ backlogRecords: 2, backlogBytes: 4, sentSeq: 2 });
    journal.close();
    const again = Journal.open(dir.path);
    expect(again.sets.counters("a")).toMatchObject({ backlogRecords: 2, backlogBytes: 4 });
    again.markSent("a", 4, 10);
    expect(again.sets.counters("a")).toMatchObject({ backlogRecords: 0, backlogBytes: 0 });
    again.close();
  });

  it("counts the backlog of a journal written before the counters existed", () => {
    const old = new DatabaseSync(join(dir.path, "journal.db"));
    old.exec(`CREATE TABLE sets (name TEXT PRIMARY KEY, next_seq INTEGER NOT NULL, sent_seq INTEGER NOT NULL,
      messages_sent INTEGER NOT NULL DEFAULT 0, bytes_sent INTEGER NOT NULL DEFAULT 0, last_send_error TEXT);
      CREATE TABLE journal (set_name TEXT NOT NULL, seq INTEGER NOT NULL, change TEXT NOT NULL, content BLOB, bytes INTEGER NOT NULL,
      PRIMARY KEY (set_name, seq)) WITHOUT ROWID;
      INSERT INTO sets (name, next_seq, sent_seq) VALUES ('a', 3, 0);
      INSERT INTO journal VALUES ('a', 1, '{"op":"delete","path":"x"}', NULL, 0), ('a', 2, '{"op":"delete","path":"y"}', NULL, 7);`);
    old.close();
    const journal = Journal.open(dir.path);
    expect(journal.sets.counters("a")).toMatchObject({ nextSeq: 3, backlogRecords: 2, backlogBytes: 7, overflowed: false, watcherProblem: null });
    expect(journal.append("a", [put("z", "1")])).toEqual([3]);
    journal.close();
  });
});
