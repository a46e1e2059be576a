// The agent's logger: JSON lines for machines, readable lines for people,
// the same events either way.

import { expect, it } from "vitest";
import { createLogger, logJsonLine } from "../../agent/log.ts";

it("writes one JSON object per line with time, level, msg and the fields", () => {
  const lines: string[] = [];
  const log = createLogger({ json: true, write: (line) => lines.push(line) });
  log.info("set scanned", { set: "docs", entries: 3 });
  expect(lines).toHaveLength(1);
  const event = JSON.parse(lines[0] ?? "") as Record<string, unknown>;
  expect(event).toMatchObject({ level: "info", msg: "set scanned", set: "docs", entries: 3 });
  expect(event.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  expect(lines[0]).not.toContain("\n");
});

it("keeps an error's message and stack", () => {
  const lines: string[] = [];
  createLogger({ json: true, write: (line) => lines.push(line) }).error("send failed", { error: new Error("connect ECONNREFUSED") });
  const event = JSON.parse(lines[0] ?? "") as { error: { message: string; stack: string } };
  expect(event.error.message).toBe("connect ECONNREFUSED");
  expect(event.error.stack).toContain("log.test.ts");
});

it("filters by level", () => {
  const lines: string[] = [];
  const log = createLogger({ json: true, level: "warn", write: (line) => lines.push(line) });
  log.debug("d");
  log.info("i");
  log.warn("w");
  log.error("e");
  expect(lines.map((l) => (JSON.parse(l) as { msg: string }).msg)).toEqual(["w", "e"]);
  const verbose: string[] = [];
  createLogger({ level: "debug", write: (line) => verbose.push(line) }).debug("details");
  expect(verbose).toHaveLength(1);
});

it("prints readable lines for people", () => {
  const lines: string[] = [];
  createLogger({ write: (line) => lines.push(line) }).warn("send failed; retrying", { set: "docs", attempt: 2, error: "throttled" });
  expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z warn {2}send failed; retrying set=docs attempt=2 error=throttled$/);
});

it("passes the applier's JSON lines through at their level, and other lines as they are", () => {
  const lines: string[] = [];
  const log = createLogger({ json: true, write: (line) => lines.push(line) });
  logJsonLine(log, JSON.stringify({ level: "warn", msg: "task finished", set: "db", status: "failed" }));
  logJsonLine(log, "not json");
  expect(lines.map((line) => JSON.parse(line))).toEqual([
    expect.objectContaining({ level: "warn", msg: "task finished", set: "db", status: "failed" }),
    expect.objectContaining({ level: "info", msg: "not json" }),
  ]);
});

it("shows control characters of a name escaped, so a file name cannot forge a line of the readable log", () => {
  const lines: string[] = [];
  const forged = "x\n2026-11-30T10:00:00.000Z info  set recovered set=www";
  createLogger({ write: (line) => lines.push(line) }).warn(`not replicated: ${forged}`, { set: "www", path: `${forged}\u202e\x1b[2J` });
  expect(lines).toHaveLength(1);
  for (const raw of ["\n", "\x1b", "\u202e"]) expect(lines[0]).not.toContain(raw);
  expect(lines[0]).toContain("not replicated: x\\n2026-11-30T10:00:00.000Z info  set recovered set=www set=www path=x\\n2026");
  expect(lines[0]).toMatch(/\\u202e\\x1b\[2J$/);
});
