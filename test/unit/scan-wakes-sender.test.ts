import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { JournalHealth } from "../../agent/journal-health.ts";
import { silentLogger } from "../../agent/log.ts";
import { Backlog } from "../../agent/set-backlog.ts";
import { SetCapture } from "../../agent/set-capture.ts";
import { SetLane, type SetContext } from "../../agent/set-context.ts";
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

it("wakes the sender at a scan's first, small transactions, so an initial mirror's first files are sent while the rest are read", async () => {
  mkdirSync(join(src.path, "many"));
  for (let f = 0; f < 1_500; f++) writeFileSync(join(src.path, "many", `f${f}`), `file ${f}`);
  // What the sender would find in the journal at each wake-up.
  const backlogAtWake: number[] = [];
  const lane = new SetLane();
  const health = new JournalHealth({ journal, log: silentLogger, monitorEnabled: false, onResumed: async () => undefined, onCorrupt: () => undefined });
  const context: SetContext = {
    spec: { name: SET, root: src.path, exclude: [] },
    journal,
    log: silentLogger,
    health,
    exclusive: (work) => lane.exclusive(work),
    wake: () => backlogAtWake.push(journal.sets.counters(SET).backlogRecords),
  };
  const capture = new SetCapture(context, new Backlog(context, 1024 * 1024 * 1024), 1024 * 1024);
  const report = await capture.scan();
  expect(report.changes).toBe(1_501);
  // Transactions of 65 (the folder and 64 files), 128, 256, 500, 500 and 52 changes: the first three wake the sender
  // (not only the scan's end), the full ones do not (the sender fills whole messages at its own pace), the end does.
  expect(backlogAtWake).toEqual([65, 193, 449, 1_501]);
});
