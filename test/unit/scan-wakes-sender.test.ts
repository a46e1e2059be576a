import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { JournalHealth } from "../../agent/journal-health.ts";
import { silentLogger } from "../../agent/log.ts";
import { Backlog } from "../../agent/set-backlog.ts";
import { SetCapture } from "../../agent/set-capture.ts";
import { SetLane, type SetContext } from "../../agent/set-context.ts";
import { FULL_MESSAGE_RECORDS } from "../../agent/scan-wake.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";
let src: ReturnType<typeof tempDir>;
let state: ReturnType<typeof tempDir>;
let journal: Journal;

beforeEach(() => {
  src = tempDir("tidemark-src-");
  state = tempDir("tidemark-state-");
  journal = Journal.open(state.path);
});

afterEach(() => {
  journal.close();
  src.remove();
  state.remove();
});

/** A SetCapture whose sender wake-ups are handled by `wake`. */
function captureWith(wake: () => void): SetCapture {
  const lane = new SetLane();
  const health = new JournalHealth({ journal, log: silentLogger, monitorEnabled: false, onResumed: async () => undefined, onCorrupt: () => undefined });
  const context: SetContext = { spec: { name: SET, root: src.path, exclude: [] }, journal, log: silentLogger, health, exclusive: (work) => lane.exclusive(work), wake, checkRoot: async () => undefined };
  return new SetCapture(context, new Backlog(context, 1024 * 1024 * 1024), 1024 * 1024);
}

it("wakes the sender at a scan's first, small transactions, so an initial mirror's first files are sent while the rest are read", async () => {
  mkdirSync(join(src.path, "many"));
  for (let f = 0; f < 1_500; f++) writeFileSync(join(src.path, "many", `f${f}`), `file ${f}`);
  // What the sender would find in the journal at each wake-up.
  const backlogAtWake: number[] = [];
  const report = await captureWith(() => backlogAtWake.push(journal.sets.counters(SET).backlogRecords)).scan();
  expect(report.changes).toBe(1_501);
  // Transactions of 65 (the folder and 64 files), 128, 256, 500, 500 and 52 changes: the first three wake the sender,
  // the fourth does not (949 records do not fill a message yet), the fifth does (1,449 do), and the scan's end.
  expect(FULL_MESSAGE_RECORDS).toBeGreaterThan(949);
  expect(FULL_MESSAGE_RECORDS).toBeLessThanOrEqual(1_449);
  expect(backlogAtWake).toEqual([65, 193, 449, 1_449, 1_501]);
});

it("wakes a sender that drained the scan's first files again each time a full message waits, not after a second's idle sleep", async () => {
  for (let d = 0; d < 8; d++) {
    mkdirSync(join(src.path, `d${d}`));
    for (let f = 0; f < 500; f++) writeFileSync(join(src.path, `d${d}`, `f${f}`), `file ${d} ${f}`);
  }
  // A sender that sends everything waiting at each wake-up: what each message would hold.
  const messages: number[] = [];
  const report = await captureWith(() => {
    const { backlogRecords, nextSeq } = journal.sets.counters(SET);
    if (backlogRecords === 0) return;
    messages.push(backlogRecords);
    journal.markSent(SET, nextSeq - 1, 0);
  }).scan();
  expect(report.changes).toBe(4_008);
  expect(messages.reduce((a, b) => a + b, 0)).toBe(4_008);
  // The first three small, then none waits for more than a message and one chunk of the scan (500 changes), and none
  // but the scan's last is sent short of a full message.
  expect(messages.slice(0, 3)).toEqual([8 + 64, 128, 256]);
  const later = messages.slice(3);
  expect(later.length).toBeGreaterThanOrEqual(2);
  expect(later.every((n) => n <= FULL_MESSAGE_RECORDS + 500)).toBe(true);
  expect(later.slice(0, -1).every((n) => n >= FULL_MESSAGE_RECORDS)).toBe(true);
});

it("does not wake the sender in the middle of a watcher's batch of new folders: the batch's end wakes it once", async () => {
  writeFileSync(join(src.path, "a"), "a");
  const backlogAtWake: number[] = [];
  const capture = captureWith(() => backlogAtWake.push(journal.sets.counters(SET).backlogRecords));
  await capture.scan();
  expect(backlogAtWake).toEqual([1]);
  // A burst of new folders (tar x, npm install): each is a folder scan of the batch.
  for (let d = 0; d < 20; d++) {
    mkdirSync(join(src.path, `d${d}`));
    for (let f = 0; f < 10; f++) writeFileSync(join(src.path, `d${d}`, `f${f}`), `file ${d} ${f}`);
    capture.hint(`d${d}`);
  }
  await capture.processHints();
  expect(backlogAtWake).toEqual([1, 1 + 20 * 11]);
});
