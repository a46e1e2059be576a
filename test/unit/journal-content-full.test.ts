// A disk that fills while a scan's batch is written into its content file
// (agent/journal-content.ts): the append is a full disk like SQLite's own
// (JournalDiskFullError, which pauses journaling until there is space), and it
// leaves neither rows nor a partial content file behind.

import { randomBytes } from "node:crypto";
import type * as Fs from "node:fs";
import { readdirSync } from "node:fs";
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { Journal, type Change } from "../../agent/journal.ts";
import { CONTENT_FILE_MIN_BYTES } from "../../agent/journal-content.ts";
import { JournalDiskFullError } from "../../agent/journal-faults.ts";
import { tempDir } from "../support/tree.ts";

let full = false;
/** Writes that take nothing and say nothing (as a writev may return 0): they must fail, not go round for good. */
let stalls = false;

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof Fs>();
  const writevSync = (...args: Parameters<typeof actual.writevSync>) => {
    if (full) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
    if (stalls) return 0;
    return actual.writevSync(...args);
  };
  return { ...actual, writevSync };
});

let dir: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir();
  full = false;
  stalls = false;
});
afterEach(() => dir.remove());

const batch = (): Change[] =>
  Array.from({ length: 20 }, (_, i) => {
    const bytes = randomBytes(Math.ceil(CONTENT_FILE_MIN_BYTES / 16));
    return { op: "put", path: `f${i}`, size: bytes.length, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { bytes } };
  });

it("names a full disk while writing a content file as the journal's, journals nothing of the batch, and leaves no file", () => {
  const journal = Journal.open(dir.path);
  full = true;
  expect(() => journal.append("a", batch())).toThrow(JournalDiskFullError);
  expect(journal.pending("a", 0, 100)).toEqual([]);
  expect(journal.sets.counters("a").backlogRecords).toBe(0);
  expect(readdirSync(journal.spoolDir)).toEqual([]);
  // Space again: the same batch journals as usual.
  full = false;
  expect(journal.append("a", batch())).toHaveLength(20);
  expect(readdirSync(journal.spoolDir).filter((name) => name.endsWith(".content"))).toHaveLength(1);
  journal.close();
});

it("fails an append whose content file's writes take nothing, journals nothing of it, and leaves no file", () => {
  const journal = Journal.open(dir.path);
  stalls = true;
  expect(() => journal.append("a", batch())).toThrow(/the disk took none of the last \d+ bytes/);
  expect(journal.sets.counters("a").backlogRecords).toBe(0);
  expect(readdirSync(journal.spoolDir)).toEqual([]);
  journal.close();
});
