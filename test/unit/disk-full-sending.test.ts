// A full disk under the state folder paused sending as well as journaling,
// though sending the journaled backlog frees its spooled content, often what
// filled the disk: the agent stalled until an operator freed space, and status
// named no send problem. What is journaled is now sent while journaling is
// paused; only a send that itself finds no space (marking it sent fails)
// pauses sending too, and status then says so and how much to free.

import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, readdirSync, statfsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { Logger } from "../../agent/log.ts";
import type { AgentProblem } from "../../agent/problem-file.ts";
import { BALLAST_FILE } from "../../agent/space-ballast.ts";
import type { MessageAttributes, StagedPayload, Transport } from "../../agent/transport/transport.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { eventually } from "../support/local-cloud.ts";
import { canMountTmpfs, mountTmpfs, unmountTmpfs } from "../support/tmpfs.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "docs";
const HOUR_MS = 3_600_000;
const MIB = 1024 * 1024;

/** The harness's transport, failing every call while `down` (the target unreachable), so a backlog builds up. */
function downTransport(inner: Transport): Transport & { down: boolean } {
  const gate = {
    down: true,
    async stage(payload: StagedPayload) {
      if (gate.down) throw new Error("target down (test)");
      return inner.stage(payload);
    },
    async send(set: string, id: string, body: string, attributes?: MessageAttributes) {
      if (gate.down) throw new Error("target down (test)");
      return inner.send(set, id, body, attributes);
    },
  };
  return gate;
}

const logged: string[] = [];
const log: Logger = { debug() {}, info: (msg) => logged.push(`info ${msg}`), warn: (msg) => logged.push(`warn ${msg}`), error: (msg) => logged.push(`error ${msg}`) };
const noWatch = () => ({ close: async () => undefined });

let h: Harness | undefined;
afterEach(async () => {
  await h?.agent.stop();
  h?.close();
  h = undefined;
  logged.length = 0;
});

function spoolBytes(dir: string): number {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .reduce((sum, entry) => sum + statSync(join(entry.parentPath, entry.name)).size, 0);
}

it("sends a message while journaling is paused, and pauses sending too, saying how much to free, when marking it sent finds no space", async () => {
  const problems: (AgentProblem | null)[] = [];
  let diskFull = false;
  const full = () => Object.assign(new Error("database or disk is full"), { code: "ERR_SQLITE_ERROR", errcode: 13, errstr: "database or disk is full" });
  const s = agentHarness(SET, { log });
  h = s;
  const transport = downTransport(s.transport);
  s.restart(
    { log, monitorEnabled: true, rescanMs: HOUR_MS, watch: noWatch, transport, onJournalProblem: (problem) => problems.push(problem) },
    {
      onWrite: () => {
        if (diskFull) throw full();
      },
    },
  );
  writeFileSync(join(s.src.path, "a.txt"), "journaled before the disk filled");
  await s.agent.start();
  expect(s.journal.sets.counters(SET).backlogRecords).toBeGreaterThan(0);

  diskFull = true;
  writeFileSync(join(s.src.path, "b.txt"), "written once the disk is full");
  s.agent.hint(SET, "b.txt");
  await eventually(async () => expect(s.agent.health.full).toBe(true), 20_000, 10);
  expect(problems.at(-1)?.problem).toMatch(/journaling paused, resumes by itself when there is space; sending what is journaled goes on/);

  // The target comes back: the backlog is sent though the disk is full, and marking it sent fails here.
  const bodies = s.transport.bodies.length;
  transport.down = false;
  await eventually(async () => expect(problems.at(-1)?.problem).toMatch(/sending paused too \(the journal found no space to mark a message sent\): free \d+ MiB in /), 20_000, 10);
  expect(s.transport.bodies.length).toBeGreaterThan(bodies);
  expect(problems.at(-1)?.problem).toContain(s.state.path);
  expect(logged.filter((line) => line.startsWith("error disk full: sending paused too"))).toHaveLength(1);

  diskFull = false;
  expect(await s.agent.probeJournal()).toBe(true);
  expect(problems.at(-1)).toBeNull();
  await eventually(async () => expect(await pictureOfTarget(s.store, SET)).toEqual(await pictureOfSource(s.src.path)), 20_000, 20);
});

/** Takes every free byte of the filesystem holding dir (a filler file grown until the disk says no). */
function fillDisk(dir: string): void {
  const filler = join(dir, `filler-${Date.now()}`);
  const { bavail, bsize } = statfsSync(dir);
  try {
    writeFileSync(filler, Buffer.alloc(Number(bavail) * bsize));
  } catch {
    // The last blocks go below, a page at a time.
  }
  try {
    for (;;) appendFileSync(filler, Buffer.alloc(4096));
  } catch {
    // ENOSPC: full.
  }
}

describe.skipIf(!canMountTmpfs)("on a real full tmpfs (as root, where mounting is permitted)", () => {
  it("sends the journaled backlog while the disk is full, which frees its spool, and journaling resumes by itself", async () => {
    const t = agentHarness(SET, { log });
    h = t;
    await t.agent.stop();
    // The state folder becomes a small tmpfs; the agent starts on it with a new journal (restart closes the old one).
    mountTmpfs(t.state.path, 8);
    try {
      const problems: (AgentProblem | null)[] = [];
      const transport = downTransport(t.transport);
      t.restart({ log, monitorEnabled: true, rescanMs: HOUR_MS, watch: noWatch, transport, onJournalProblem: (problem) => problems.push(problem) });
      await t.agent.start();
      // A backlog whose content waits in the spool, unsent: the target is down.
      for (let i = 0; i < 3; i++) writeFileSync(join(t.src.path, `backlog-${i}.bin`), randomBytes(1.5 * MIB));
      await t.agent.scan(SET);
      expect(t.journal.sets.counters(SET).backlogRecords).toBe(3);
      expect(spoolBytes(t.journal.spoolDir)).toBeGreaterThanOrEqual(4.5 * MIB);

      // The rest of the disk fills but for 1 MiB; a change larger than that finds no space.
      const { bavail, bsize } = statfsSync(t.state.path);
      writeFileSync(join(t.state.path, "filler"), Buffer.alloc(Math.max(0, Number(bavail) * bsize - MIB)));
      writeFileSync(join(t.src.path, "later.bin"), randomBytes(2 * MIB));
      t.agent.hint(SET, "later.bin");
      await eventually(async () => expect(t.agent.health.full).toBe(true), 20_000, 10);

      // The target is back; nobody frees space (the filler stays): sending the backlog frees the spool, journaling
      // resumes with its catch-up scan, and everything reaches the target.
      transport.down = false;
      await eventually(async () => expect(await pictureOfTarget(t.store, SET)).toEqual(await pictureOfSource(t.src.path)), 60_000, 50);
      expect(t.agent.health.full).toBe(false);
      expect(problems.at(-1)).toBeNull();
      expect(problems.some((problem) => problem?.problem.includes("sending what is journaled goes on"))).toBe(true);
      expect(problems.some((problem) => problem?.problem.includes("sending paused too"))).toBe(false);
    } finally {
      // Unmounted whatever stopping throws (lazily when still busy), so no test leaves a mount or removes files through one.
      try {
        await t.agent.stop();
        t.journal.close();
      } finally {
        unmountTmpfs(t.state.path);
        t.src.remove();
        t.state.remove();
        h = undefined;
      }
    }
  });
  it("deletes the space ballast when the disk fills to its last byte, so the backlog's marks go on (without it, sending paused for good)", async () => {
    const t = agentHarness(SET, { log });
    h = t;
    await t.agent.stop();
    mountTmpfs(t.state.path, 12);
    try {
      const problems: (AgentProblem | null)[] = [];
      const transport = downTransport(t.transport);
      t.restart({ log, monitorEnabled: true, rescanMs: HOUR_MS, watch: noWatch, transport, onJournalProblem: (problem) => problems.push(problem) });
      await t.agent.start();
      expect(statSync(join(t.state.path, BALLAST_FILE)).size).toBe(2 * MIB);
      for (let i = 0; i < 3; i++) writeFileSync(join(t.src.path, `backlog-${i}.bin`), randomBytes(MIB));
      await t.agent.scan(SET);
      expect(t.journal.sets.counters(SET).backlogRecords).toBe(3);

      // Every free byte taken: a change then finds no space, and the agent deletes its ballast.
      fillDisk(t.state.path);
      writeFileSync(join(t.src.path, "later.bin"), randomBytes(2 * MIB));
      t.agent.hint(SET, "later.bin");
      await eventually(async () => expect(t.agent.health.full).toBe(true), 20_000, 10);
      expect(existsSync(join(t.state.path, BALLAST_FILE))).toBe(false);
      expect(problems.at(-1)?.problem).toMatch(/deleted the 2 MiB space ballast .* at .*: that freed (1\.[5-9]|2\.\d) MiB, free space now/);

      transport.down = false;
      await eventually(async () => expect(await pictureOfTarget(t.store, SET)).toEqual(await pictureOfSource(t.src.path)), 60_000, 50);
      expect(problems.some((problem) => problem?.problem.includes("sending paused too"))).toBe(false);
    } finally {
      // Unmounted whatever stopping throws (lazily when still busy), so no test leaves a mount or removes files through one.
      try {
        await t.agent.stop();
        t.journal.close();
      } finally {
        unmountTmpfs(t.state.path);
        t.src.remove();
        t.state.remove();
        h = undefined;
      }
    }
  });
});
