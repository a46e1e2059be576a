// A path whose capture found it changing while read is read once at its next
// capture (set-capture.ts). That mark goes with the path: when the file, or a
// folder above it, is deleted or renamed away, a file made later at the same
// path is read as any new file (up to 5 times for a stable copy), and the
// marks do not pile up for paths that are gone. (The file's own delete
// already cleared it: its capture ran.)

import { mkdirSync, renameSync, rmSync, truncateSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { isMarkerMessage, parseMessage } from "../../contract/wire.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "db";
const WAL = "d/app.db-wal";
/** At least a block: moved with its folder, it travels as a rename. */
const SIZE = 600 * 1024;
let h: Harness;

afterEach(async () => {
  vi.restoreAllMocks();
  await h.close();
});

/** A harness whose reads of WAL's delta race a write while `writing.on` (each read looks up the fingerprints first). */
async function walHarness(): Promise<{ writing: { on: boolean }; capturedReads: () => Promise<number> }> {
  h = agentHarness(SET);
  const harness = h;
  const abs = join(harness.src.path, WAL);
  mkdirSync(join(harness.src.path, "d"));
  // Another file: deleting d leaves the root holding something (an emptied root is held, root-hold.test.ts).
  writeFileSync(join(harness.src.path, "keep.txt"), "kept");
  writeFileSync(abs, Buffer.alloc(SIZE, 1));
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  const writing = { on: true };
  let reads = 0;
  const fingerprints = harness.journal.index.chunkFingerprints.bind(harness.journal.index);
  vi.spyOn(harness.journal.index, "chunkFingerprints").mockImplementation((set, path, sha256) => {
    if (path === WAL) {
      reads += 1;
      if (writing.on) {
        truncateSync(abs, SIZE + reads * 4096);
        utimesSync(abs, new Date(), new Date(Date.now() + reads * 1000));
      }
    }
    return fingerprints(set, path, sha256);
  });
  const capturedReads = async () => {
    reads = 0;
    utimesSync(abs, new Date(), new Date(Date.now() - 60_000));
    harness.agent.hint(SET, WAL);
    await harness.agent.processHints(SET);
    return reads;
  };
  return { writing, capturedReads };
}

/** WAL or its folder goes (how: delete or rename), the change is captured, and a new WAL is made and indexed. */
async function replaceFolder(how: (src: string) => string[]): Promise<void> {
  const hinted = how(h.src.path);
  for (const path of hinted) h.agent.hint(SET, path);
  await h.agent.processHints(SET);
  mkdirSync(join(h.src.path, "d"), { recursive: true });
  writeFileSync(join(h.src.path, WAL), Buffer.alloc(SIZE, 3));
  await h.agent.scan(SET);
  await h.agent.drain(SET);
}

it.each([
  ["its folder is deleted", (src: string) => (rmSync(join(src, "d"), { recursive: true }), ["d"])],
  ["its folder is renamed", (src: string) => (renameSync(join(src, "d"), join(src, "e")), ["d", "e"])],
] as const)("forgets that a path kept changing while read when %s", async (_how, how) => {
  const { writing, capturedReads } = await walHarness();
  expect(await capturedReads()).toBe(5);
  // Marked: the next capture reads it once.
  writing.on = false;
  expect(await capturedReads()).toBe(1);
  writing.on = true;
  expect(await capturedReads()).toBe(5);
  await replaceFolder(how);
  // A new file at the old path: read for a stable copy, as any file not seen changing while read.
  expect(await capturedReads()).toBe(5);
});

it("forgets it when the file is renamed (its old name is never captured again)", async () => {
  const { writing, capturedReads } = await walHarness();
  expect(await capturedReads()).toBe(5);
  // A rescan finds it stable (the index then matches it), and it moves: journaled as a rename.
  writing.on = false;
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  const sent = h.transport.bodies.length;
  renameSync(join(h.src.path, WAL), join(h.src.path, "d/moved.db-wal"));
  h.agent.hint(SET, WAL);
  h.agent.hint(SET, "d/moved.db-wal");
  await h.agent.processHints(SET);
  await h.agent.drain(SET);
  const records = h.transport.bodies.slice(sent).flatMap((body) => {
    const message = parseMessage(body);
    return isMarkerMessage(message) ? [] : message.records;
  });
  expect(records).toContainEqual(expect.objectContaining({ op: "rename", from: WAL, to: "d/moved.db-wal" }));
  writeFileSync(join(h.src.path, WAL), Buffer.alloc(SIZE, 3));
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  writing.on = true;
  expect(await capturedReads()).toBe(5);
});

it("forgets it when a whole-set scan finds another file renamed onto the path (a new file there)", async () => {
  const { writing, capturedReads } = await walHarness();
  expect(await capturedReads()).toBe(5);
  writing.on = false;
  const other = "d/other.db-wal";
  writeFileSync(join(h.src.path, other), Buffer.alloc(SIZE, 5));
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  const sent = h.transport.bodies.length;
  renameSync(join(h.src.path, other), join(h.src.path, WAL));
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  const records = h.transport.bodies.slice(sent).flatMap((body) => {
    const message = parseMessage(body);
    return isMarkerMessage(message) ? [] : message.records;
  });
  expect(records).toContainEqual(expect.objectContaining({ op: "rename", from: other, to: WAL }));
  writing.on = true;
  expect(await capturedReads()).toBe(5);
});
