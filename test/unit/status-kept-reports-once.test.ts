// `tidemark status` listed and parsed the state folder's drill-reports/ once per set; it reads it once per status,
// and still names each kept report under its own set only.

import { mkdirSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { collectStatus } from "../../agent/commands/status.ts";
import type * as DrillKept from "../../agent/drill-kept.ts";
import { keepDrillReport, keptDrillReports } from "../../agent/drill-kept.ts";
import type { DrillReport } from "../../contract/drills.ts";
import { tempDir } from "../support/tree.ts";

vi.mock("../../agent/drill-kept.ts", async (importOriginal) => {
  const actual = await importOriginal<typeof DrillKept>();
  return { ...actual, keptDrillReports: vi.fn(actual.keptDrillReports) };
});

const SETS = ["www", "db", "logs"];
let server: Server;
let dir: ReturnType<typeof tempDir>;
let config: string;

beforeAll(async () => {
  // A target that answers every request with a server error at once: status names it unreachable and reads no more.
  server = createServer((request, response) => {
    request.resume();
    response.writeHead(503, { "content-type": "application/xml" }).end("<Error><Code>ServiceUnavailable</Code><Message>down</Message></Error>");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  dir = tempDir();
  for (const set of SETS) mkdirSync(join(dir.path, set));
  mkdirSync(join(dir.path, "s"));
  config = join(dir.path, "tidemark.config.json");
  writeFileSync(config, JSON.stringify({ endpoint, queueUrl: `${endpoint}/000000000000/q.fifo`, bucket: "bucket", stateDir: "s", sets: SETS.map((name) => ({ name, path: name })) }));
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  dir.remove();
});

function drillReport(id: string, set: string): DrillReport {
  return {
    id,
    set,
    passed: true,
    startedAt: "2026-12-01T04:00:00.000Z",
    finishedAt: "2026-12-01T04:01:00.000Z",
    recoveryPoint: { kind: "snapshot", id: "snap-1", takenAt: "2026-12-01T03:59:00.000Z" },
    rto: { restoreMs: 1, verifyMs: 1, checkMs: 0, totalMs: 2 },
    rpo: { ageMs: 60_000, lagMs: null },
    entries: 3,
    bytes: 10,
    problems: [],
    problemCount: 0,
    scratch: { path: "/tmp/x", kept: false },
  };
}

it("reads the kept drill reports once for all sets, and names each under its set", async () => {
  const stateDir = join(dir.path, "s");
  const file = keepDrillReport(stateDir, drillReport("20261201T040100Z-dbdbdb", "db"));
  vi.mocked(keptDrillReports).mockClear();
  const reports = await collectStatus(config);
  expect(vi.mocked(keptDrillReports)).toHaveBeenCalledTimes(1);
  expect(Object.fromEntries(reports.map((r) => [r.set, r.drillReportsKept.map((kept) => kept.file)]))).toEqual({ www: [], db: [file], logs: [] });
});
