// The journal limit: a backlog that reaches it stops journaling (the set is
// out of sync), and once it drains a catch-up scan journals what changed.
// Nothing is lost.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Agent } from "../../agent/agent.ts";
import { Journal } from "../../agent/journal.ts";
import type { Logger } from "../../agent/log.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { MemoryTransport } from "../support/memory-transport.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "logs";
const LIMIT = 4096;
let src: ReturnType<typeof tempDir>;
let state: ReturnType<typeof tempDir>;
let store: MemoryStore;
let journal: Journal;
let agent: Agent;
const logged: string[] = [];
const log: Logger = {
  debug() {},
  info: (msg) => logged.push(`info ${msg}`),
  warn: (msg) => logged.push(`warn ${msg}`),
  error: (msg) => logged.push(`error ${msg}`),
};

beforeEach(() => {
  src = tempDir("tidemark-src-");
  state = tempDir("tidemark-state-");
  store = new MemoryStore();
  journal = Journal.open(state.path);
  logged.length = 0;
  agent = new Agent({
    sets: [{ name: SET, root: src.path, exclude: [] }],
    journal,
    transport: new MemoryTransport(new Applier({ store, log: () => {} }), store),
    journalLimitBytes: LIMIT,
    monitorEnabled: false,
    log,
  });
  for (let d = 0; d < 10; d++) {
    mkdirSync(join(src.path, `d${d}`));
    for (let f = 0; f < 3; f++) writeFileSync(join(src.path, `d${d}`, `f${f}`), Buffer.alloc(1000, d * 3 + f));
  }
});

afterEach(async () => {
  await agent.stop();
  journal.close();
  src.remove();
  state.remove();
});

it("stops journaling at the limit, is out of sync, and catches up without losing anything", async () => {
  const report = await agent.scan(SET);
  expect(report.stopped).toBe(true);
  const counters = journal.counters(SET);
  expect(counters.overflowed).toBe(true);
  // One directory's worth past the limit at most: the check runs between directories.
  expect(counters.backlogBytes).toBeLessThanOrEqual(LIMIT + 3000);
  expect(logged.some((l) => l.startsWith("error journal limit reached"))).toBe(true);

  // A change while full is not journaled...
  writeFileSync(join(src.path, "d0", "f0"), "changed while the journal was full");
  agent.hint(SET, "d0/f0");
  expect(await agent.processHints(SET)).toBe(0);

  // ...and arrives anyway: draining brings the backlog down, and the catch-up scan finds it.
  await agent.drain(SET);
  expect(journal.counters(SET)).toMatchObject({ overflowed: false, backlogRecords: 0 });
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
  expect(logged.some((l) => l.startsWith("info journal drained; catching up with a scan"))).toBe(true);
});

it("remembers a full journal across a restart", async () => {
  await agent.scan(SET);
  await agent.stop();
  journal.close();
  journal = Journal.open(state.path);
  expect(journal.counters(SET).overflowed).toBe(true);
  agent = new Agent({ sets: [{ name: SET, root: src.path, exclude: [] }], journal, transport: new MemoryTransport(new Applier({ store, log: () => {} }), store), journalLimitBytes: LIMIT, monitorEnabled: false });
  await agent.drain(SET);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
});

it("says so when the disk holding the journal is full, and catches up once there is space", async () => {
  await agent.scan(SET);
  await agent.drain(SET);
  const append = journal.append.bind(journal);
  journal.append = () => {
    throw Object.assign(new Error("database or disk is full"), { code: "ERR_SQLITE_ERROR", errstr: "SQLITE_FULL" });
  };
  writeFileSync(join(src.path, "d1", "f1"), "written while the disk was full");
  agent.hint(SET, "d1/f1");
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(logged).toContain("error the disk holding the journal is full; changes are caught up by the next scan once there is space");
  journal.append = append;
  await agent.scan(SET);
  await agent.drain(SET);
  expect(await pictureOfTarget(store, SET)).toEqual(await pictureOfSource(src.path));
});
