// Progress output: a bar with files, bytes, rate and ETA on a terminal;
// plain lines, not too many, otherwise.

import { expect, it } from "vitest";
import type { Progress } from "../../agent/operations.ts";
import { createProgressView, describeProgress, RateMeter } from "../../agent/progress.ts";

const MiB = 1024 * 1024;
const scan = (entries: number, bytes: number, total?: number): Progress => ({ phase: "scan", entries, changes: entries, bytes, ...(total ? { total } : {}) });

it("shows files, bytes, rate and ETA, with a bar on a terminal", () => {
  const line = describeProgress(scan(250, 10 * MiB, 1000), { elapsedMs: 10_000, bytesPerSecond: MiB, etaSeconds: 30 }, true);
  expect(line).toBe("scanning [######------------------] 250/1000 files  10.0 MiB journaled  1.0 MiB/s  ETA 0:30");
  expect(describeProgress(scan(250, 0), { elapsedMs: 1000 }, false)).toBe("scanning 250 files  0 B journaled");
  // A long read is named: the scan's counts stand still meanwhile (a large file appended while read, say).
  expect(describeProgress({ phase: "scan", entries: 2, changes: 0, bytes: 0, total: 2, reading: { path: "db/big\n.log", size: 3 * 1024 * MiB } }, { elapsedMs: 1000 }, false)).toBe(
    "scanning 2/2 files  0 B journaled  reading db/big\\n.log (3.0 GiB)",
  );
  expect(describeProgress({ phase: "wait", seq: 90, appliedSeq: 40 }, { elapsedMs: 0 }, true)).toBe("waiting for the target: applied seq 40 of 90");
  // A marker's seq counts as applied only once its action finished: while it runs, say so, not "applied 89 of 90".
  expect(describeProgress({ phase: "wait", seq: 90, appliedSeq: 89, running: true }, { elapsedMs: 0 }, false)).toBe(
    "waiting for the target: it reached the marker (seq 90); its action is still running",
  );
});

it("tells no ETA until progress was watched long and far enough, then one from the rate observed in the phase", () => {
  const meter = new RateMeter();
  // The first update comes after hooks and connecting: the time before it is no part of the rate.
  expect(meter.timing(scan(1, 0, 20_000), 60_000)).toEqual({ elapsedMs: 0 });
  // A second later: too soon to tell (the old view said "ETA 33:20" here).
  expect(meter.timing(scan(200, MiB, 20_000), 61_000).etaSeconds).toBeUndefined();
  // 4 s in, 1% done: still too little seen.
  expect(meter.timing(scan(150, MiB, 20_000), 64_000).etaSeconds).toBeUndefined();
  // 4 s in, 2,000 more entries: 500 a second, and 17,999 left.
  expect(meter.timing(scan(2_001, 4 * MiB, 20_000), 64_000)).toEqual({ elapsedMs: 4_000, bytesPerSecond: MiB, etaSeconds: 17_999 / 500 });
  // A total that proved wrong gives no ETA.
  expect(meter.timing(scan(25_000, 4 * MiB, 20_000), 65_000).etaSeconds).toBeUndefined();
  // A new phase starts its own watch.
  expect(meter.timing({ phase: "restore", files: 1, totalFiles: 10, bytes: MiB, totalBytes: 10 * MiB }, 70_000)).toEqual({ elapsedMs: 0 });
  expect(meter.timing({ phase: "restore", files: 4, totalFiles: 10, bytes: 4 * MiB, totalBytes: 10 * MiB }, 73_000)).toEqual({ elapsedMs: 3_000, bytesPerSecond: MiB, etaSeconds: 6 });
});

it("shows a scan of seconds without an ETA of minutes", () => {
  const out: string[] = [];
  let clock = 0;
  const view = createProgressView({ tty: true, write: (t) => out.push(t), now: () => clock });
  // 20 s of quiesce and settle before the scan's first update, then 20,000 files in 2 s.
  clock = 20_000;
  for (let entries = 1; entries <= 20_001; entries += 1000) {
    view.update(scan(entries, 0, 20_000));
    clock += 100;
  }
  expect(out.filter((line) => line.includes("ETA"))).toEqual([]);
});

it("redraws in place on a terminal and ends the line when done", () => {
  const out: string[] = [];
  const view = createProgressView({ tty: true, write: (t) => out.push(t), now: () => 0 });
  view.update({ phase: "scan", entries: 1, changes: 1, bytes: 1 });
  view.update({ phase: "scan", entries: 2, changes: 2, bytes: 2 });
  view.done();
  expect(out.slice(0, 2).every((t) => t.startsWith("\r\x1b[2K"))).toBe(true);
  expect(out.at(-1)).toBe("\n");
});

it("prints a plain line per phase and then every few seconds when not a terminal", () => {
  const out: string[] = [];
  let clock = 0;
  const view = createProgressView({ tty: false, write: (t) => out.push(t), now: () => clock });
  for (let i = 0; i < 100; i++) {
    clock += 100;
    view.update({ phase: "scan", entries: i, changes: i, bytes: i });
  }
  view.update({ phase: "wait", seq: 5, appliedSeq: 1 });
  view.done();
  expect(out.every((t) => t.endsWith("\n") && !t.includes("\r"))).toBe(true);
  // 10 s of scanning: the first line and one 5 s later, then the phase change.
  expect(out).toHaveLength(3);
  expect(out.at(-1)).toBe("waiting for the target: applied seq 1 of 5\n");
});

it("repeats a plain line that says nothing new only once a minute (a marker's action running for minutes), a changed one every few seconds", () => {
  const out: string[] = [];
  let clock = 0;
  const view = createProgressView({ tty: false, write: (t) => out.push(t), now: () => clock });
  // Six minutes of the same answer, polled every second.
  for (let i = 0; i < 360; i++) {
    view.update({ phase: "wait", seq: 55, appliedSeq: 54, running: true });
    clock += 1_000;
  }
  expect(out).toHaveLength(6);
  expect(new Set(out)).toEqual(new Set(["waiting for the target: it reached the marker (seq 55); its action is still running\n"]));
  // Progress that moves is still shown every few seconds.
  out.length = 0;
  for (let i = 0; i < 20; i++) {
    view.update({ phase: "wait", seq: 55 + 20, appliedSeq: 55 + i });
    clock += 1_000;
  }
  expect(out).toHaveLength(4);
});
