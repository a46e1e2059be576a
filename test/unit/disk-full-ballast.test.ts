// Marking a message sent needs about 100 KB of the state folder's disk: on a disk filled to its last bytes, sending
// paused until an operator freed space. The agent now keeps a space ballast in the state folder, deletes it at the
// first write that finds no space (a journal write's or a send's mark), so marks and status go on, says so in the
// problem status shows, and makes it again once journaling resumes with room for it.

import { existsSync, rmSync, statfsSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { JournalHealth } from "../../agent/journal-health.ts";
import { Journal } from "../../agent/journal.ts";
import { silentLogger } from "../../agent/log.ts";
import type { AgentProblem } from "../../agent/problem-file.ts";
import { BALLAST_FILE } from "../../agent/space-ballast.ts";
import { canMountTmpfs, mountTmpfs, unmountTmpfs } from "../support/tmpfs.ts";
import { tempDir } from "../support/tree.ts";

const MIB = 1024 * 1024;
/** What a journal write (SQLite's SQLITE_FULL) throws on a full disk. */
const full = () => Object.assign(new Error("database or disk is full"), { code: "ERR_SQLITE_ERROR", errcode: 13, errstr: "database or disk is full" });
/** What a spool write throws on a full disk. */
const enospc = () => Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });

let dir: ReturnType<typeof tempDir>;
let journal: Journal;
let health: JournalHealth | undefined;
const problems: (AgentProblem | null)[] = [];
beforeEach(() => {
  dir = tempDir();
  journal = Journal.open(dir.path);
  problems.length = 0;
});
afterEach(() => {
  health?.stop();
  health = undefined;
  journal.close();
  dir.remove();
});

const open = (options: { ballastBytes?: number; onResumed?: () => Promise<void> } = {}) =>
  (health = new JournalHealth({ journal, log: silentLogger, monitorEnabled: false, onResumed: async () => undefined, onCorrupt: () => undefined, onProblem: (p) => problems.push(p), ...options }));
const ballast = () => join(dir.path, BALLAST_FILE);

it("keeps a ballast, deletes it when a journal write finds no space (status says when), and makes it again once journaling resumes", async () => {
  const h = open();
  expect(statSync(ballast()).size).toBe(2 * MIB);

  expect(h.handle(enospc())).toBe(true);
  expect(h.full).toBe(true);
  expect(existsSync(ballast())).toBe(false);
  expect(problems.at(-1)?.problem).toMatch(
    new RegExp(`deleted the 2 MiB space ballast \\(${ballast()}\\) at \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z so that sent messages can still be marked: that freed .*, free space now [\\d.]+ MiB`),
  );
  // The space it freed takes the marks: sending goes on.
  expect(h.sending).toBe(true);

  expect(await h.probe()).toBe(true);
  expect(problems.at(-1)).toBeNull();
  expect(statSync(ballast()).size).toBe(2 * MIB);
});

it("sends again at once when a send's mark found no space and the ballast was there to delete; pauses when it is gone", () => {
  const h = open();
  expect(h.handleSend(full())).toBe(true);
  expect(existsSync(ballast())).toBe(false);
  expect(h.sending).toBe(true);
  expect(problems.at(-1)?.problem).toMatch(/sending what is journaled goes on .*; deleted the 2 MiB space ballast .* at /);
  // No ballast left: a mark that finds no space pauses sending, as before.
  expect(h.handleSend(full())).toBe(true);
  expect(problems.at(-1)?.problem).toMatch(/sending paused too .*; deleted the 2 MiB space ballast .* at /);
});

it("keeps no ballast when told (ballastBytes 0), and a full disk then says nothing of one", () => {
  const h = open({ ballastBytes: 0 });
  expect(existsSync(ballast())).toBe(false);
  expect(h.handleSend(full())).toBe(true);
  expect(problems.at(-1)?.problem).toMatch(/sending paused too/);
  expect(problems.at(-1)?.problem).not.toMatch(/ballast/);
});

it("makes the ballast again only after the catch-up scan journaled, from the space it left", async () => {
  const seen: boolean[] = [];
  const h = open({ onResumed: async () => void seen.push(existsSync(ballast())) });
  expect(h.handle(enospc())).toBe(true);
  expect(await h.probe()).toBe(true);
  // Not there while the catch-up ran (it would have taken the room the catch-up needs), there once it is done.
  expect(seen).toEqual([false]);
  expect(statSync(ballast()).size).toBe(2 * MIB);
});

describe.skipIf(!canMountTmpfs)("on a real tmpfs (as root, where mounting is permitted)", () => {
  it("resumes for good when the catch-up fits the free space only without the ballast (it failed at every probe, forever)", async () => {
    const mount = tempDir();
    mountTmpfs(mount.path, 16);
    let tmpJournal: Journal | undefined;
    let tmpHealth: JournalHealth | undefined;
    try {
      tmpJournal = Journal.open(mount.path);
      const free = () => Number(statfsSync(mount.path).bavail) * statfsSync(mount.path).bsize;
      const outcomes: string[] = [];
      const catchUp = join(mount.path, "catch-up.bin");
      const health: JournalHealth = new JournalHealth({
        journal: tmpJournal,
        log: silentLogger,
        monitorEnabled: false,
        onCorrupt: () => undefined,
        // A catch-up scan journaling 6 MiB.
        onResumed: async () => {
          try {
            writeFileSync(catchUp, Buffer.alloc(6 * MIB, 1));
            outcomes.push("fit");
          } catch (error) {
            rmSync(catchUp, { force: true });
            outcomes.push("ENOSPC");
            health.handle(error);
          }
        },
      });
      tmpHealth = health;
      expect(statSync(join(mount.path, BALLAST_FILE)).size).toBe(2 * MIB);
      const filler = join(mount.path, "filler");
      writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 64 * 1024), 1));
      expect(health.handle(enospc())).toBe(true);
      // Sends free their spool: 7 MiB free, room for the catch-up without the ballast, not with it.
      truncateSync(filler, 0);
      writeFileSync(filler, Buffer.alloc(free() - 7 * MIB, 1));
      for (let i = 0; i < 4 && health.full; i++) await health.probe();
      expect(outcomes).toEqual(["fit"]);
      expect(health.full).toBe(false);
      // About 1 MiB left: no room for the ballast and its margin, so it is not made.
      expect(existsSync(join(mount.path, BALLAST_FILE))).toBe(false);
    } finally {
      try {
        tmpHealth?.stop();
        tmpJournal?.close();
      } finally {
        unmountTmpfs(mount.path);
        mount.remove();
      }
    }
  });
});
