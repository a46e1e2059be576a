// How busy large files are paced (busy-files.ts), stepped by hand on its own clock.

import { expect, it } from "vitest";
import { BusyFiles } from "../../agent/busy-files.ts";

it("once the target's checkpoint is known, holds a busy file's next version until the target applied the last (at most 8 paces), not only its pace", () => {
  let now = 0;
  // 1 MiB at 1 MiB/s: a pace of 1 s.
  const busy = new BusyFiles(1024, { bytesPerSecond: 1024 * 1024, quietMs: 300, now: () => now });
  const put = { op: "put", path: "app.db", size: 1024 * 1024, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { bytes: new Uint8Array() } } as const;
  busy.journaled([put], [7]);
  busy.applied(6);
  // Sent (seq 7), written on every 100 ms, pace over: still waits, the target has not applied seq 7.
  for (now = 0; now <= 2000; now += 100) expect(busy.defer("app.db", 7)).toBe(true);
  expect(busy.ready(7)).toEqual([]);
  busy.applied(7);
  expect(busy.ready(7)).toEqual(["app.db"]);

  // A checkpoint that never moves holds a version for at most 8 paces.
  busy.journaled([put], [8]);
  const from = now;
  for (; now < from + 8000; now += 100) expect(busy.defer("app.db", 8)).toBe(true);
  expect(busy.ready(8)).toEqual(["app.db"]);
});
