// At most two versions of a busy large file unapplied on the target (busy-files.ts): the one it rebuilds and, once
// the file is quiet, the one after the last write; quiet measured from the file's writes. Stepped on its own clock.

import { expect, it, vi } from "vitest";
import { BusyFiles } from "../../agent/busy-files.ts";
import { holdReason } from "../../agent/held-files.ts";
import { busyPut as put, sevenUnapplied, steppedBusyFiles, writtenWaiting } from "../support/busy-file.ts";

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
  const busy = sevenUnapplied(clock);
  writes(busy, clock, 500, 50, 7);
  // Quiet while seq 7 is in the rebuild: the version after the last write goes.
  clock.now += 400;
  expect(busy.ready(7)).toEqual(["app.db"]);
  busy.journaled([put], [8]);

  // The pause was not the last write: the file is written again, and goes quiet again, seq 7 still unapplied.
  writes(busy, clock, clock.now + 500, 50, 8);
  clock.now += 500;
  expect(busy.ready(8)).toEqual([]);
  const [held] = busy.held(8);
  expect(held).toMatchObject({ path: "app.db", seq: 8, waitsFor: "queued", behind: 7 });
  expect(held && holdReason(held)).toContain("once the file is quiet and seq 7 is applied");
  // The target applied seq 7: the quiet file goes, behind the one version left (seq 8).
  busy.applied(7);
  expect(busy.ready(8)).toEqual(["app.db"]);
  busy.journaled([put], [9]);
  expect(busy.held(9)).toEqual([]);
});

it("never holds a quiet file behind an unapplied version for good: one pace past that version's own, not its whole wait for a checkpoint that may be stuck", () => {
  const clock = { now: 0 };
  const busy = sevenUnapplied(clock);
  writes(busy, clock, 500, 50, 7);
  clock.now += 400;
  expect(busy.ready(7)).toEqual(["app.db"]);
  busy.journaled([put], [8]);
  busy.wrote("app.db");
  expect(busy.defer("app.db", 8)).toBe(true);
  // Seq 7 was journaled at 0 with a pace of 1 s (so until 1 s): waited for 2 s at most, not its 8 s wait for the checkpoint.
  clock.now = 1_900;
  expect(busy.ready(8)).toEqual([]);
  expect(busy.nextDueMs(8)).toBe(100);
  clock.now = 2_000;
  expect(busy.ready(8)).toEqual(["app.db"]);
});

it("says a queued file is captured by its own wait at the latest, which holds while the file is still written", () => {
  const clock = { now: 0 };
  const busy = sevenUnapplied(clock);
  writtenWaiting(busy);
  clock.now = 300;
  expect(busy.ready(7)).toEqual(["app.db"]);
  busy.journaled([put], [8]);
  expect(busy.defer("app.db", 8)).toBe(true);
  // Seq 8 is rebuilt after seq 7 (paced to 1 s): its wait for the checkpoint runs from there, 1 + 8 s.
  const [held] = busy.held(8);
  expect(held).toMatchObject({ waitsFor: "queued", behind: 7, until: 9_000 });
  writes(busy, clock, 8_950, 50, 8);
  expect(busy.ready(8)).toEqual([]);
  clock.now = 9_000;
  expect(busy.ready(8)).toEqual(["app.db"]);
});

it("takes quiet from the file's last write even when the capture attempt reached the set's lane later", () => {
  const clock = { now: 0 };
  const busy = sevenUnapplied(clock);
  for (; clock.now <= 2000; clock.now += 100) busy.wrote("app.db");
  // The hinted capture ran only at 3 s (another capture held the lane): quiet since 2.3 s by the file's own writes.
  clock.now = 3000;
  expect(busy.defer("app.db", 7)).toBe(true);
  expect(busy.nextDueMs(7)).toBe(0);
  expect(busy.ready(7)).toEqual(["app.db"]);
  // Without the watcher's events (a polling scan deferred it), quiet runs from that attempt.
  const polled = sevenUnapplied(clock);
  expect(polled.defer("app.db", 7)).toBe(true);
  expect(polled.nextDueMs(7)).toBe(300);
});

it("is due for no waiting file whose previous version is not sent: the send looks at it again, no timer spins", () => {
  const clock = { now: 0 };
  const busy = steppedBusyFiles(clock);
  busy.journaled([put], [7]);
  expect(busy.defer("app.db", 6)).toBe(true);
  clock.now = 20_000;
  expect(busy.ready(6)).toEqual([]);
  expect(busy.nextDueMs(6)).toBeUndefined();
  expect(busy.nextDueMs(7)).toBe(0);
});

it("without the target's checkpoint, paces a version queued behind another from the end of that one's pace: at most two unapplied", () => {
  const clock = { now: 0 };
  // 1 MiB at 1 MiB/s: a pace of 1 s each, rebuilt one after the other.
  const busy = steppedBusyFiles(clock);
  busy.journaled([put], [7]);
  busy.wrote("app.db");
  expect(busy.defer("app.db", 7)).toBe(true);
  clock.now = 300;
  // Quiet: seq 8 goes while seq 7 is rebuilt (until 1 s), so it is rebuilt from 1 s to 2 s.
  expect(busy.ready(7)).toEqual(["app.db"]);
  busy.journaled([put], [8]);
  writes(busy, clock, 1_950, 50, 8);
  expect(busy.ready(8)).toEqual([]);
  expect(busy.held(8)).toEqual([{ path: "app.db", seq: 8, waitsFor: "pace", until: 2_000 }]);
  clock.now = 2_000;
  expect(busy.ready(8)).toEqual(["app.db"]);
});

it("stops waiting for a file a marker's barrier journaled, and forgets files deleted, renamed, or applied and not waiting", () => {
  const clock = { now: 0 };
  const busy = sevenUnapplied(clock);
  busy.wrote("app.db");
  clock.now = 100;
  expect(busy.defer("app.db", 7)).toBe(true);
  // The barrier journals its newest content: not held any more.
  busy.journaled([put], [8]);
  expect(busy.held(8)).toEqual([]);
  expect(busy.nextDueMs(8)).toBeUndefined();
  // Deleted: a new file at that name is not held behind the old one's versions.
  busy.journaled([{ op: "delete", path: "app.db" }], [9]);
  expect(busy.defer("app.db", 9)).toBe(false);
  busy.journaled([{ ...put, path: "b.db" }], [10]);
  busy.journaled([{ op: "rename", from: "b.db", to: "c.db" }], [11]);
  expect(busy.defer("b.db", 11)).toBe(false);
  // Applied and not waiting: dropped (as releasing it would), so the next version waits behind nothing.
  busy.journaled([{ ...put, path: "d.db" }], [12]);
  busy.applied(12);
  busy.journaled([{ ...put, path: "d.db" }], [13]);
  clock.now += 100;
  busy.wrote("d.db");
  expect(busy.defer("d.db", 13)).toBe(true);
  expect(busy.held(13)).toEqual([{ path: "d.db", seq: 13, waitsFor: "apply", until: clock.now - 100 + 8_000 }]);
});

it("takes quiet from the file's last write as the watcher saw it, not from the last capture attempt (which waits behind the set's lane)", () => {
  const clock = { now: 0 };
  const busy = sevenUnapplied(clock);
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
  const busy = sevenUnapplied(clock);
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
  const other = sevenUnapplied(clock, 512 * 1024);
  other.wrote("app.db");
  clock.now += 10_000;
  other.wrote("app.db");
  expect(other.defer("app.db", 7)).toBe(true);
  clock.now += 300;
  expect(other.ready(7)).toEqual(["app.db"]);
});

it.each([
  // 1 MiB at 100 KiB/s: a pace of 10.24 s, so quiet is 1,024 ms, not quietMs's 300.
  { why: "at least a tenth of the unapplied version's pace: a wrong guess costs the target that whole version", bytesPerSecond: 100 * 1024, quietMs: 1024 },
  // 1 MiB at 10 KiB/s: a pace of 102.4 s, a tenth of which would be 10.24 s.
  { why: "at most ten times quietMs, however long the version's pace", bytesPerSecond: 10 * 1024, quietMs: 3000 },
])("waits for quiet $why", ({ bytesPerSecond, quietMs }) => {
  const clock = { now: 0 };
  const busy = sevenUnapplied(clock, bytesPerSecond);
  writtenWaiting(busy);
  clock.now = quietMs - 1;
  expect(busy.ready(7)).toEqual([]);
  expect(busy.nextDueMs(7)).toBe(1);
  clock.now = quietMs;
  expect(busy.ready(7)).toEqual(["app.db"]);
});

it("measures quiet and paces on a clock the wall clock's steps do not move, and names the deadline in wall-clock time", async () => {
  // The wall clock, as NTP sets it (mocked).
  vi.setSystemTime(Date.now());
  try {
    // The default clock: 1 MiB at 1 MiB/s, a pace of 1 s and quiet after 300 ms, no checkpoint.
    const busy = new BusyFiles(1024, { bytesPerSecond: 1024 * 1024, quietMs: 300 });
    busy.journaled([put], [7]);
    busy.wrote("app.db");
    expect(busy.defer("app.db", 7)).toBe(true);
    // NTP steps the wall clock back an hour: the file's last write is not an hour in the future now.
    vi.setSystemTime(Date.now() - 3_600_000);
    const [held] = busy.held(7);
    expect(held && "until" in held && Math.abs(held.until - (Date.now() + 1000)) < 60_000).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(busy.ready(7)).toEqual(["app.db"]);
  } finally {
    vi.useRealTimers();
  }
});
