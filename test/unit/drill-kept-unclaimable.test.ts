// A kept drill report the agent cannot take away (drill-reports/ not writable by the agent's user: an older version's
// root drill left it as root's) is never sent. The agent's sweep says so as an error naming the way out, not a warn
// that looks like "kept for the next agent", and journals nothing it could not then remove.

import type * as fs from "node:fs";
import { afterEach, expect, it, vi } from "vitest";
import { keepDrillReport, keptDrillReports, sendKeptDrillReports } from "../../agent/drill-kept.ts";
import type { DrillReport } from "../../contract/drills.ts";
import { tempDir } from "../support/tree.ts";

// Tests run as root, whom no folder mode refuses: the claim's rename is refused as it is for the service's user.
vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof fs>();
  return {
    ...actual,
    renameSync: (from: fs.PathLike, to: fs.PathLike) => {
      if (String(to).endsWith(".sending")) throw Object.assign(new Error(`EACCES: permission denied, rename '${String(from)}'`), { code: "EACCES" });
      actual.renameSync(from, to);
    },
  };
});

let dir: ReturnType<typeof tempDir> | undefined;
afterEach(() => {
  dir?.remove();
  dir = undefined;
});

it("a kept report whose claim is refused is logged as an error that says status names it, journaled never, and stays kept", async () => {
  dir = tempDir("tidemark-drill-unclaimable-");
  const stateDir = `${dir.path}/state`;
  const report: DrillReport = {
    id: "20261201T050000Z-aaaaaa",
    set: "db",
    passed: true,
    startedAt: "2026-12-01T04:59:00.000Z",
    finishedAt: "2026-12-01T05:00:00.000Z",
    recoveryPoint: { kind: "snapshot", id: "snap-1", takenAt: "2026-12-01T03:59:00.000Z" },
    rto: { restoreMs: 1, verifyMs: 1, checkMs: 0, totalMs: 2 },
    rpo: { ageMs: 60_000, lagMs: null },
    entries: 3,
    bytes: 10,
    problems: [],
    problemCount: 0,
    scratch: { path: "/tmp/x", kept: false },
  };
  const file = keepDrillReport(stateDir, report);
  const logged: string[] = [];
  const log = { debug: () => undefined, info: () => undefined, warn: (msg: string) => logged.push(`warn ${msg}`), error: (msg: string) => logged.push(`error ${msg}`) };
  const journaled: DrillReport[] = [];
  await sendKeptDrillReports(stateDir, ["db"], async (_set, r) => journaled.push(r), log);
  expect(journaled).toEqual([]);
  expect(logged).toEqual(["error drill report kept in the state folder cannot be sent: `tidemark status` names it"]);
  expect(keptDrillReports(stateDir)).toEqual([{ file, report }]);
});
