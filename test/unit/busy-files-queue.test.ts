// At most two versions of a busy large file unapplied on the target (busy-files.ts): the one it rebuilds and, once
// the file is quiet, the one after the last write; quiet measured from the file's writes. Stepped on its own clock.

import { expect, it } from "vitest";
import { BusyFiles } from "../../agent/busy-files.ts";
import { holdReason } from "../../agent/held-files.ts";

const put = { op: "put", path: "app.db", size: 1024 * 1024, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { bytes: new Uint8Array() } } as const;

/** The file written every `every` ms until `to`, as the watcher and the capture's attempts see it. */
function writes(busy: BusyFiles, clock: { now: number }, to: number, every: number, sentSeq: number): void {
  for (; clock.now < to; clock.now += every) {
    busy.wrote("app.db");
    expect(busy.defer("app.db", sentSeq)).toBe(true);
  }
}

it("releases a quiet file while one version is unapplied, but not while two are: it waits for the target to apply the earlier", () => {
  const clock = { now: 0 };
  // 1 MiB at 1 MiB/s: a pace of 1 s, 8 s at most for the target's checkpoint.
  const busy = new BusyFiles(1024, { bytesPerSecond: 1024 * 1024, quietMs: 300, now: () => clock.now });
  busy.applied(6);
  busy.journaled([put], [7]);
  writes(busy, clock, 500, 50, 7);
  // Quiet while seq 7 is in the rebuild: the version after the last write goes.
  clock.now += 400;
  expect(busy.ready(7)).toEqual(["app.db"]);
  busy.journaled([put], [8]);

  // The pause was not the last write: the file is written again, and goes quiet again, seq 7 still unapplied.
  writes(busy, clock, clock.now + 500, 50, 8);
  clock.now += 1000;
  expect(busy.ready(8)).toEqual([]);
  const [held] = busy.held(8);
  expect(held).toMatchObject({ path: "app.db", seq: 8, waitsFor: "queued", behind: 7 });
  expect(held && holdReason(held)).toContain("once it applied seq 7");
  // The target applied seq 7: the quiet file goes, behind the one version left (seq 8).
  busy.applied(7);
  expect(busy.ready(8)).toEqual(["app.db"]);
  busy.journaled([put], [9]);
  expect(busy.held(9)).toEqual([]);
});

it("never holds a quiet file behind an unapplied version for good: at most that version's wait for the checkpoint", () => {
  const clock = { now: 0 };
  const busy = new BusyFiles(1024, { bytesPerSecond: 1024 * 1024, quietMs: 300, now: () => clock.now });
  busy.applied(6);
  busy.journaled([put], [7]);
  writes(busy, clock, 500, 50, 7);
  clock.now += 400;
  expect(busy.ready(7)).toEqual(["app.db"]);
  busy.journaled([put], [8]);
  busy.wrote("app.db");
  expect(busy.defer("app.db", 8)).toBe(true);
  // Seq 7 was journaled at 0 with a pace of 1 s: waited for 8 s at most.
  clock.now = 7_900;
  expect(busy.ready(8)).toEqual([]);
  expect(busy.nextDueMs()).toBe(100);
  clock.now = 8_000;
  expect(busy.ready(8)).toEqual(["app.db"]);
});

it("takes quiet from the file's last write as the watcher saw it, not from the last capture attempt (which waits behind the set's lane)", () => {
  const clock = { now: 0 };
  const busy = new BusyFiles(1024, { bytesPerSecond: 1024 * 1024, quietMs: 300, now: () => clock.now });
  busy.applied(6);
  busy.journaled([put], [7]);
  expect(busy.defer("app.db", 7)).toBe(true);
  // Written every 100 ms for 2 s while no capture attempt runs (the lane is busy).
  for (; clock.now <= 2000; clock.now += 100) {
    busy.wrote("app.db");
    expect(busy.ready(7)).toEqual([]);
  }
  clock.now = 2000 + 250;
  expect(busy.ready(7)).toEqual([]);
  clock.now = 2000 + 300;
  expect(busy.ready(7)).toEqual(["app.db"]);
});

it("stretches the quiet wait to twice the longest pause between the file's writes, but not by a pause that was the file going quiet", () => {
  const clock = { now: 0 };
  const busy = new BusyFiles(1024, { bytesPerSecond: 1024 * 1024, quietMs: 300, now: () => clock.now });
  busy.applied(6);
  busy.journaled([put], [7]);
  expect(busy.defer("app.db", 7)).toBe(true);
  // Writes 250 ms apart (a fsync stalled under load): quiet needs 500 ms.
  for (; clock.now <= 1000; clock.now += 250) busy.wrote("app.db");
  const last = clock.now - 250;
  clock.now = last + 400;
  expect(busy.ready(7)).toEqual([]);
  clock.now = last + 500;
  expect(busy.ready(7)).toEqual(["app.db"]);

  // Another file (paced at 2 s, waited for 16 s at most): quiet for 10 s, then written again; that pause does not
  // stretch its wait.
  const other = new BusyFiles(1024, { bytesPerSecond: 512 * 1024, quietMs: 300, now: () => clock.now });
  other.applied(6);
  other.journaled([put], [7]);
  other.wrote("app.db");
  clock.now += 10_000;
  other.wrote("app.db");
  expect(other.defer("app.db", 7)).toBe(true);
  clock.now += 300;
  expect(other.ready(7)).toEqual(["app.db"]);
});

it("waits for quiet at least a tenth of the unapplied version's pace: a wrong guess costs the target that whole version", () => {
  const clock = { now: 0 };
  // 1 MiB at 100 KiB/s: a pace of 10.24 s, so quiet is 1,024 ms, not quietMs's 300.
  const busy = new BusyFiles(1024, { bytesPerSecond: 100 * 1024, quietMs: 300, now: () => clock.now });
  busy.applied(6);
  busy.journaled([put], [7]);
  busy.wrote("app.db");
  expect(busy.defer("app.db", 7)).toBe(true);
  clock.now = 1023;
  expect(busy.ready(7)).toEqual([]);
  expect(busy.nextDueMs()).toBe(1);
  clock.now = 1024;
  expect(busy.ready(7)).toEqual(["app.db"]);
});

it("stretches the quiet wait to at most ten times quietMs, however long the version's pace", () => {
  const clock = { now: 0 };
  // 1 MiB at 10 KiB/s: a pace of 102.4 s, a tenth of which would be 10.24 s.
  const busy = new BusyFiles(1024, { bytesPerSecond: 10 * 1024, quietMs: 300, now: () => clock.now });
  busy.applied(6);
  busy.journaled([put], [7]);
  busy.wrote("app.db");
  expect(busy.defer("app.db", 7)).toBe(true);
  clock.now = 2999;
  expect(busy.ready(7)).toEqual([]);
  clock.now = 3000;
  expect(busy.ready(7)).toEqual(["app.db"]);
});
