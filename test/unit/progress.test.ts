// Progress output: a bar with files, bytes, rate and ETA on a terminal;
// plain lines, not too many, otherwise.

import { expect, it } from "vitest";
import { createProgressView, describeProgress } from "../../agent/progress.ts";

it("shows files, bytes, rate and ETA, with a bar on a terminal", () => {
  const line = describeProgress({ phase: "scan", entries: 250, total: 1000, changes: 250, bytes: 10 * 1024 * 1024 }, 10_000, true);
  expect(line).toBe("scanning [######------------------] 250/1000 files  10.0 MiB journaled  1.0 MiB/s  ETA 0:30");
  expect(describeProgress({ phase: "scan", entries: 250, changes: 3, bytes: 0 }, 1000, false)).toBe("scanning 250 files  0 B journaled  0 B/s");
  expect(describeProgress({ phase: "wait", seq: 90, appliedSeq: 40 }, 0, true)).toBe("waiting for the target: applied seq 40 of 90");
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
