// The space ballast is made by the agent, which may run as root, in the state folder, which whoever runs tidemark
// can write: a symbolic link planted at the ballast's temp name had the agent truncate and fill the file it pointed
// at with 2 MiB of random bytes, and one at the ballast's own name (to any file of 2 MiB or more) was taken as the
// ballast, whose deletion then freed nothing. Neither is followed now.

import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { JournalHealth } from "../../agent/journal-health.ts";
import { Journal } from "../../agent/journal.ts";
import { silentLogger, type Logger } from "../../agent/log.ts";
import { BALLAST_FILE, SpaceBallast } from "../../agent/space-ballast.ts";
import { tempDir } from "../support/tree.ts";

const MIB = 1024 * 1024;
let dir: ReturnType<typeof tempDir>;
let outside: ReturnType<typeof tempDir>;
beforeEach(() => {
  dir = tempDir();
  outside = tempDir();
});
afterEach(() => {
  dir.remove();
  outside.remove();
});

const ballastPath = () => join(dir.path, BALLAST_FILE);

it("writes through no link planted at a temp name (the old fixed one or this process's)", () => {
  const victim = join(outside.path, "victim");
  writeFileSync(victim, "precious\n");
  symlinkSync(victim, `${ballastPath()}.tmp`);
  symlinkSync(victim, `${ballastPath()}.${process.pid}.tmp`);

  expect(new SpaceBallast(ballastPath(), 2 * MIB).make(0)).toBe(true);
  expect(readFileSync(victim, "utf8")).toBe("precious\n");
  const made = lstatSync(ballastPath());
  expect(made.isFile()).toBe(true);
  expect(made.size).toBe(2 * MIB);
});

it("takes no link at the ballast's name for the ballast: removes the link, leaves its target, and makes a real one", () => {
  const victim = join(outside.path, "large");
  const content = Buffer.alloc(3 * MIB, 7);
  writeFileSync(victim, content);
  symlinkSync(victim, ballastPath());

  const ballast = new SpaceBallast(ballastPath(), 2 * MIB);
  expect(ballast.make(0)).toBe(true);
  expect(readFileSync(victim).equals(content)).toBe(true);
  const made = lstatSync(ballastPath());
  expect(made.isSymbolicLink()).toBe(false);
  expect(made.size).toBe(2 * MIB);
  // Deleting it frees its own space, not a link's.
  expect(ballast.release()).toBe(true);
  expect(readFileSync(victim).equals(content)).toBe(true);
});

it("removes a link at the ballast's name even when the disk has no room to make it", () => {
  const victim = join(outside.path, "large");
  writeFileSync(victim, Buffer.alloc(3 * MIB, 7));
  symlinkSync(victim, ballastPath());
  const ballast = new SpaceBallast(ballastPath(), 2 * MIB);
  expect(ballast.make(Number.MAX_SAFE_INTEGER)).toBe(false);
  expect(() => lstatSync(ballastPath())).toThrow(/ENOENT/);
  expect(ballast.why).toMatch(/MiB free needed in /);
  expect(readFileSync(victim).length).toBe(3 * MIB);
});

it("starts with a directory planted at a temp name (the old fixed one or this process's): the ballast is not made, and says why", () => {
  for (const temp of [`${ballastPath()}.tmp`, `${ballastPath()}.${process.pid}.tmp`]) {
    mkdirSync(temp);
    writeFileSync(join(temp, "inside"), "kept");
  }
  const journal = Journal.open(dir.path);
  const warned: string[] = [];
  const log: Logger = { ...silentLogger, warn: (msg, fields) => warned.push(`${msg} ${JSON.stringify(fields)}`) };
  try {
    const health = new JournalHealth({ journal, log, monitorEnabled: false, onResumed: async () => undefined, onCorrupt: () => undefined });
    health.stop();
  } finally {
    journal.close();
  }
  expect(existsSync(ballastPath())).toBe(false);
  expect(warned).toEqual([expect.stringMatching(/^space ballast not made: .*"why":"could not make .*space-ballast: .*EISDIR/)]);
  expect(readFileSync(join(`${ballastPath()}.${process.pid}.tmp`, "inside"), "utf8")).toBe("kept");
});

it("removes the temp files agents that stopped while making theirs left (a link itself, unfollowed), not directories", () => {
  const victim = join(outside.path, "victim");
  writeFileSync(victim, "precious\n");
  writeFileSync(`${ballastPath()}.4000001.tmp`, Buffer.alloc(MIB, 1));
  symlinkSync(victim, `${ballastPath()}.4000002.tmp`);
  mkdirSync(`${ballastPath()}.4000003.tmp`);
  writeFileSync(join(dir.path, "space-ballast.notes.tmp"), "not one of ours");

  expect(new SpaceBallast(ballastPath(), 2 * MIB).make(0)).toBe(true);
  expect(readdirSync(dir.path).sort()).toEqual([BALLAST_FILE, `${BALLAST_FILE}.4000003.tmp`, "space-ballast.notes.tmp"]);
  expect(readFileSync(victim, "utf8")).toBe("precious\n");
});
