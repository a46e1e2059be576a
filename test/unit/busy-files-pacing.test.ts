// How busy large files are paced (busy-files.ts), stepped by hand on its own clock.

import { expect, it } from "vitest";
import { busyPut as put, sevenUnapplied, writtenWaiting } from "../support/busy-file.ts";

it("once the target's checkpoint is known, holds a busy file's next version until the target applied the last (at most 8 paces), not only its pace", () => {
  const clock = { now: 0 };
  // 1 MiB at 1 MiB/s: a pace of 1 s.
  const busy = sevenUnapplied(clock);
  // Sent (seq 7), written on every 100 ms, pace over: still waits, the target has not applied seq 7.
  for (clock.now = 0; clock.now <= 2000; clock.now += 100) expect(busy.defer("app.db", 7)).toBe(true);
  expect(busy.ready(7)).toEqual([]);
  busy.applied(7);
  expect(busy.ready(7)).toEqual(["app.db"]);

  // A checkpoint that never moves holds a version for at most 8 paces (the pace now what seq 7 took: 2.1 s).
  expect(clock.now).toBe(2100);
  busy.journaled([put], [8]);
  const from = clock.now;
  for (; clock.now < from + 8 * 2100; clock.now += 100) expect(busy.defer("app.db", 8)).toBe(true);
  expect(busy.ready(8)).toEqual(["app.db"]);
});

it("stretches the pace to what the target took to apply the last version, so a slow target is not sent a version at every cap (at most 16 times the configured pace)", () => {
  const clock = { now: 0 };
  // 1 MiB at 1 MiB/s: a configured pace of 1 s, a cap of 8 s.
  const busy = sevenUnapplied(clock);
  // The target takes 5 s to apply seq 7 (the file written all the while).
  for (clock.now = 0; clock.now < 5000; clock.now += 100) expect(busy.defer("app.db", 7)).toBe(true);
  busy.applied(7);
  expect(busy.ready(7)).toEqual(["app.db"]);

  // The next version waits for the target past the configured cap of 8 s: up to 8 times the 5 s it took.
  busy.journaled([put], [8]);
  const from = clock.now;
  for (; clock.now < from + 40_000; clock.now += 100) expect(busy.defer("app.db", 8)).toBe(true);
  expect(busy.ready(8)).toEqual(["app.db"]);

  // A target that took far longer stretches the pace to 16 s at most: a cap of 128 s.
  busy.journaled([put], [9]);
  clock.now += 1_000_000;
  busy.applied(9);
  expect(busy.ready(9)).toEqual([]);
  busy.journaled([put], [10]);
  const last = clock.now;
  for (; clock.now < last + 128_000; clock.now += 1000) expect(busy.defer("app.db", 10)).toBe(true);
  expect(busy.ready(10)).toEqual(["app.db"]);
});

it("times a version queued behind another from when that one was seen applied, not from when it was journaled", () => {
  const clock = { now: 0 };
  // 1 MiB at 1 MiB/s: a pace of 1 s.
  const busy = sevenUnapplied(clock);
  writtenWaiting(busy);
  clock.now = 300;
  expect(busy.ready(7)).toEqual(["app.db"]);
  busy.journaled([put], [8]);
  // Seq 7 rebuilt in 1 s; seq 8 after it, in 1 s more: the target's pace is still 1 s, not the 1.7 s since seq 8 was journaled.
  clock.now = 1000;
  busy.applied(7);
  clock.now = 2000;
  busy.applied(8);
  busy.journaled([put], [9]);
  busy.wrote("app.db");
  expect(busy.defer("app.db", 9)).toBe(true);
  expect(busy.held(9)).toEqual([{ path: "app.db", seq: 9, waitsFor: "apply", until: 2000 + 8 * 1000 }]);
});
