// Small files' content journaled in bulk (agent/journal-content.ts): a batch
// whose small contents add up to CONTENT_FILE_MIN_BYTES or more keeps them in
// one content file in the spool folder, written and fsynced inside the
// append's transaction, instead of a blob per row. What must hold: the content
// is on disk before its rows commit, a record survives a crash between its
// journaling and its sending, nothing is left by an append that failed, the
// file goes once its last record is sent, and a removed file is named and
// captured again, never sent wrong nor blocking the set.

import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, openSync, closeSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Journal, type Change, type JournalRecord } from "../../agent/journal.ts";
import { CONTENT_FILE_MIN_BYTES, ContentFileLostError } from "../../agent/journal-content.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const FILE_BYTES = 16 * 1024;
/** Enough files of FILE_BYTES to pass the threshold. */
const FILES = Math.ceil(CONTENT_FILE_MIN_BYTES / FILE_BYTES) + 2;

const put = (path: string, bytes: Buffer): Change => ({
  op: "put",
  path,
  size: bytes.length,
  mode: 0o644,
  mtimeNs: "1",
  sha256: createHash("sha256").update(bytes).digest("hex"),
  content: { bytes },
});

const contentFiles = (journal: Journal) => readdirSync(journal.spoolDir).filter((name) => name.endsWith(".content"));
const bytesOf = (record: JournalRecord | undefined): Buffer | undefined => (record?.op === "put" && "bytes" in record.content ? Buffer.from(record.content.bytes) : undefined);

describe("journal content files", () => {
  let dir: ReturnType<typeof tempDir>;
  let contents: Buffer[];
  let batch: Change[];
  beforeEach(() => {
    dir = tempDir();
    contents = Array.from({ length: FILES }, () => randomBytes(FILE_BYTES));
    // A folder and a delete among the puts: records without content keep their place.
    batch = [{ op: "mkdir", path: "d", mode: 0o755, mtimeNs: "1" }, ...contents.map((bytes, i) => put(`d/f${i}`, bytes)), { op: "delete", path: "gone" }];
  });
  afterEach(() => dir.remove());

  it("writes a large batch's small contents into one content file before its rows commit, and reads them back byte for byte after a reopen", () => {
    let onDisk: Buffer | undefined;
    const journal = Journal.open(dir.path, {
      // Called inside the transaction, just before COMMIT.
      onWrite: () => {
        const [file] = contentFiles(journal);
        onDisk = file === undefined ? undefined : readFileSync(join(journal.spoolDir, file));
      },
    });
    journal.append("a", batch);
    expect(onDisk).toEqual(Buffer.concat(contents));
    expect(contentFiles(journal)).toHaveLength(1);
    // The agent stops (or crashes) before sending: the next process sends what was journaled.
    journal.close();
    const again = Journal.open(dir.path);
    const records = again.pending("a", 0, 100);
    expect(records.map((record) => record.op)).toEqual(["mkdir", ...contents.map(() => "put"), "delete"]);
    expect(records.slice(1, -1).map((record) => bytesOf(record))).toEqual(contents);
    // Read in pages that split the file's run of records.
    expect([...again.pending("a", 0, 5), ...again.pending("a", 5, 100)].map((record) => bytesOf(record) ?? null)).toEqual(records.map((record) => bytesOf(record) ?? null));
    again.close();
  });

  it("keeps a small batch's content in its rows (a file and its fsyncs would cost more)", () => {
    const journal = Journal.open(dir.path);
    journal.append("a", [put("small", Buffer.from("a few bytes"))]);
    expect(contentFiles(journal)).toEqual([]);
    expect(bytesOf(journal.pending("a", 0, 10)[0])?.toString()).toBe("a few bytes");
    journal.close();
  });

  it("removes the content file once its last record is sent, not before", () => {
    const journal = Journal.open(dir.path);
    const seqs = journal.append("a", batch);
    const lastPut = seqs[seqs.length - 2] ?? 0;
    journal.markSent("a", lastPut - 1, 1);
    expect(contentFiles(journal)).toHaveLength(1);
    expect(bytesOf(journal.pending("a", lastPut - 1, 1)[0])).toEqual(contents[contents.length - 1]);
    journal.markSent("a", lastPut, 1);
    expect(contentFiles(journal)).toEqual([]);
    journal.close();
  });

  it("leaves no content file and no record when the append fails, and a leftover of a crashed append is removed by the next process", () => {
    const failing = Journal.open(dir.path, {
      onWrite: () => {
        throw new Error("injected failure before COMMIT");
      },
    });
    expect(() => failing.append("a", batch)).toThrow("injected failure");
    expect(contentFiles(failing)).toEqual([]);
    expect(failing.pending("a", 0, 100)).toEqual([]);
    failing.close();

    const first = Journal.open(dir.path);
    first.append("a", batch);
    const [kept] = contentFiles(first);
    first.close();
    // A process killed between writing its file and committing the rows that name it.
    writeFileSync(join(dir.path, "spool", "00000000-0000-0000-0000-000000000000.content"), "left by a crash");
    const next = Journal.open(dir.path);
    next.append("a", batch);
    expect(contentFiles(next)).toHaveLength(2);
    expect(contentFiles(next)).toContain(kept);
    expect(next.pending("a", 0, 100).filter((record) => record.op === "put").map((record) => bytesOf(record))).toEqual([...contents, ...contents]);
    next.close();
  });

  it("names the record whose content file is gone, and lists it among the unsent spools the repair checks", () => {
    const journal = Journal.open(dir.path);
    const seqs = journal.append("a", batch);
    const [file] = contentFiles(journal);
    rmSync(join(journal.spoolDir, file ?? ""));
    expect(() => journal.pending("a", 0, 100)).toThrow(ContentFileLostError);
    expect(journal.pending("a", 0, 1).map((record) => record.op)).toEqual(["mkdir"]);
    expect(journal.unsentSpools("a")).toEqual(seqs.slice(1, -1).map((seq) => ({ seq, spool: file, lost: true })));
    journal.close();
  });

  it("counts a content file cut short as lost for the records past its end only, without reading it", () => {
    const journal = Journal.open(dir.path);
    const seqs = journal.append("a", batch);
    const [file = ""] = contentFiles(journal);
    // Two records' contents whole, the third's in part.
    truncateSync(join(journal.spoolDir, file), 2 * FILE_BYTES + 10);
    expect(journal.unsentSpools("a").map((row) => row.lost)).toEqual(seqs.slice(1, -1).map((_, i) => i >= 2));
    expect(() => journal.pending("a", 0, 100)).toThrow(/cut short/);
    expect(existsSync(join(journal.spoolDir, file))).toBe(true);
    journal.close();
  });

  it("refuses content read back altered (its sha256 differs), and counts every unsent record of its file lost", () => {
    const journal = Journal.open(dir.path);
    const seqs = journal.append("a", batch);
    const [file = ""] = contentFiles(journal);
    expect(journal.unsentSpools("a").every((row) => row.lost === false)).toBe(true);
    const fd = openSync(join(journal.spoolDir, file), "r+");
    writeSync(fd, Buffer.alloc(100, 0x41), 0, 100, 3 * FILE_BYTES + 500);
    closeSync(fd);
    expect(() => journal.pending("a", 0, 100)).toThrow(ContentFileLostError);
    expect(() => journal.pending("a", 0, 100)).toThrow(/altered/);
    // The records before it read back as journaled.
    expect(journal.pending("a", 0, 4).slice(1).map((record) => bytesOf(record))).toEqual(contents.slice(0, 3));
    expect(journal.unsentSpools("a")).toEqual(seqs.slice(1, -1).map((seq) => ({ seq, spool: file, lost: true })));
    journal.close();
  });

  it("refuses a delta's content read back altered, checked against the delta's own sha256", () => {
    const journal = Journal.open(dir.path);
    const bytes = contents[3] ?? Buffer.alloc(0);
    const contentSha256 = createHash("sha256").update(bytes).digest("hex");
    // The fourth put carries changed ranges of a larger file: its sha256 is the new file's, not its content's.
    batch[4] = { op: "put", path: "d/f3", size: 4 * FILE_BYTES, mode: 0o644, mtimeNs: "1", sha256: "f".repeat(64), content: { bytes }, delta: { base: "0".repeat(64), blocks: [], ranges: [[FILE_BYTES, FILE_BYTES]], contentSha256 } };
    journal.append("a", batch);
    expect(bytesOf(journal.pending("a", 0, 100)[4])).toEqual(bytes);
    const [file = ""] = contentFiles(journal);
    const fd = openSync(join(journal.spoolDir, file), "r+");
    writeSync(fd, Buffer.alloc(100, 0x41), 0, 100, 3 * FILE_BYTES + 500);
    closeSync(fd);
    expect(() => journal.pending("a", 0, 100)).toThrow(/altered/);
    journal.close();
  });

  it("removes a leftover content file when the journal opens, not only at the next large batch", () => {
    const first = Journal.open(dir.path);
    first.append("a", batch);
    const [kept] = contentFiles(first);
    first.close();
    writeFileSync(join(dir.path, "spool", "00000000-0000-0000-0000-000000000000.content"), "left by a crash");
    const next = Journal.open(dir.path);
    expect(contentFiles(next)).toEqual([kept]);
    next.close();
  });

  it("opens past a leftover it cannot remove (a folder by a content file's name), leaving it be", () => {
    Journal.open(dir.path).close();
    mkdirSync(join(dir.path, "spool", "11111111-1111-1111-1111-111111111111.content"));
    const journal = Journal.open(dir.path);
    expect(journal.append("a", batch)).toHaveLength(batch.length);
    expect(existsSync(join(dir.path, "spool", "11111111-1111-1111-1111-111111111111.content"))).toBe(true);
    journal.close();
  });
});

describe("agent with content files", () => {
  let h: Harness;
  afterEach(async () => {
    await h.close();
  });

  it("takes records whose content file was removed out of the stream, names them, captures them again and sends them whole", async () => {
    h = agentHarness("app");
    const src = h.src.path;
    for (let i = 0; i < FILES; i++) writeFileSync(join(src, `f${i}.dat`), randomBytes(FILE_BYTES));
    await h.agent.scan("app");
    const files = contentFiles(h.journal);
    expect(files).toHaveLength(1);
    // A cleaner removes the file, not the folder: only packing the message finds it gone.
    for (const file of files) rmSync(join(h.journal.spoolDir, file));
    expect(existsSync(h.journal.spoolDir)).toBe(true);

    await h.agent.drain("app");
    expect(await pictureOfTarget(h.store, "app")).toEqual(await pictureOfSource(src));
    // Named while they waited for the scan's capture; sent since, so no longer.
    expect(h.journal.skipped("app")).toEqual([]);
    expect(h.journal.sets.counters("app").backlogRecords).toBe(0);
    expect(contentFiles(h.journal)).toEqual([]);
  });

  it.each([
    ["cut short", (path: string) => truncateSync(path, 1000)],
    [
      "altered in place (same length)",
      (path: string) => {
        const fd = openSync(path, "r+");
        writeSync(fd, Buffer.alloc(100, 0x41), 0, 100, 10 * FILE_BYTES + 7);
        closeSync(fd);
      },
    ],
  ])("repairs a content file %s like a removed one: its records are named, captured again and sent whole", async (_how, damage) => {
    const errors: string[] = [];
    const log = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: (msg: string) => void errors.push(msg) };
    h = agentHarness("app", { log });
    const src = h.src.path;
    for (let i = 0; i < 20; i++) writeFileSync(join(src, `f${i}.dat`), randomBytes(FILE_BYTES));
    await h.agent.scan("app");
    const [file = ""] = contentFiles(h.journal);
    damage(join(h.journal.spoolDir, file));

    await h.agent.drain("app");
    expect(errors).toContain("not replicated until captured again: spooled content was deleted");
    expect(await pictureOfTarget(h.store, "app")).toEqual(await pictureOfSource(src));
    expect(h.journal.sets.counters("app").backlogRecords).toBe(0);
    expect(contentFiles(h.journal)).toEqual([]);
  });
});
