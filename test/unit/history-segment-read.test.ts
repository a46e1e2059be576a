// A history segment that is missing or unreadable fails every reader (restore
// --at, the timeline, retention, the applier's folder writes and duplicate
// checks) with HistoryError naming the segment, never a bare parse error.

import { gzipSync } from "node:zlib";
import { expect, it } from "vitest";
import { segmentKey } from "../../contract/history.ts";
import { HistoryError, readSegment, readSegmentWithMeta, writeSegment } from "../../lambdas/history/history-store.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";

const SET = "data";

it("reads back what was written, and names a segment that is missing, not JSON or not history", async () => {
  const store = new MemoryStore();
  const entry = { seq: 1, at: 1_000, op: "delete", path: "a.txt" } as const;
  await writeSegment(store, SET, 0, [entry], { checkpoint: "1" });
  expect(await readSegment(store, SET, 0)).toEqual([entry]);
  expect(await readSegmentWithMeta(store, SET, 0)).toMatchObject({ entries: [entry], meta: { checkpoint: "1" } });

  await expect(readSegment(store, SET, 1)).rejects.toThrow(new HistoryError(`history segment 1 of set "data" is missing: the history after it cannot be replayed`));
  expect(await readSegmentWithMeta(store, SET, 1)).toBeUndefined();

  await store.put(segmentKey(SET, 2), gzipSync(`${JSON.stringify(entry)}\n{ not json\n`));
  await expect(readSegment(store, SET, 2)).rejects.toThrow(HistoryError);
  await expect(readSegment(store, SET, 2)).rejects.toThrow(/history segment 2 of set "data" holds a line that is not JSON/);

  await store.put(segmentKey(SET, 3), gzipSync(`${JSON.stringify({ seq: "one", op: "teleport" })}\n`));
  await expect(readSegment(store, SET, 3)).rejects.toThrow(/history segment 3 of set "data" holds an entry that is not one/);

  await store.put(segmentKey(SET, 4), Buffer.from("plain text"));
  await expect(readSegment(store, SET, 4)).rejects.toThrow(/history segment 4 of set "data" does not gunzip/);
});
