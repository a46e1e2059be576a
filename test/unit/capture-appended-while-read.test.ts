// A large file appended faster than the agent reads it (a log or a database
// growing at tens of MB/s) was followed for as long as it grew: each read went
// on to the end of the file, and the end kept moving, so a marker's barrier
// scan sat at "scanning 2/2 files" for minutes while the file grew by GiBs
// behind it. A read now stops at the size its stat gave; the stat after the
// read, or bytes found past that size (a stale stat of a network file
// system), tell that the file kept changing, and the barrier names it.

import { createHash, randomBytes } from "node:crypto";
import { appendFileSync, closeSync, fstatSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from "node:fs";
import type * as FsPromises from "node:fs/promises";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { capture } from "../../agent/capture.ts";
import type { Change } from "../../agent/journal.ts";
import { agentHarness, type Harness } from "../support/harness.ts";

const SET = "logs";
const MiB = 1024 * 1024;

/** While set, lstat of this path answers this stat, as a cache holding old attributes would. */
let stale: { path: string; stat: unknown } | undefined;

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof FsPromises>();
  const lstat = (async (path: string, options?: unknown) => {
    if (stale && path === stale.path) return stale.stat;
    return actual.lstat(path, options as never);
  }) as typeof actual.lstat;
  return { ...actual, lstat, default: { ...actual, lstat } };
});

let h: Harness;
afterEach(async () => {
  stale = undefined;
  vi.restoreAllMocks();
  await h.close();
});

const sha = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");
const spec = () => ({ name: SET, root: h.src.path, exclude: [] });

function onlyPut(changes: readonly Change[]) {
  const put = changes.find((change) => change.op === "put");
  if (put?.op !== "put") throw new Error("no put captured");
  return put;
}

function spooled(put: ReturnType<typeof onlyPut>): Buffer {
  if (!("spool" in put.content)) throw new Error("expected spooled content");
  return readFileSync(join(h.journal.spoolDir, put.content.spool));
}

it("reads a new large file up to the size its stat gave, not the bytes appended after it, and names it changing", async () => {
  h = agentHarness(SET);
  const abs = join(h.src.path, "app.log");
  writeFileSync(abs, randomBytes(4 * MiB));
  const told: number[] = [];
  const changing: string[] = [];
  const { changes } = await capture(h.journal, spec(), "app.log", {
    // The writer appends a MiB between each stat and its read.
    beforeRead: (size) => {
      told.push(size);
      appendFileSync(abs, randomBytes(MiB));
    },
    onChangingWhileRead: (path) => changing.push(path),
  });
  const put = onlyPut(changes);
  expect(changing).toEqual(["app.log"]);
  expect(put.size).toBe(told.at(-1));
  const bytes = spooled(put);
  expect(bytes.length).toBe(put.size);
  expect(put.sha256).toBe(sha(readFileSync(abs).subarray(0, put.size)));
});

it("ends a known large file's delta read at the size it began with while every read of it races an append", async () => {
  h = agentHarness(SET);
  const abs = join(h.src.path, "db.wal");
  writeFileSync(abs, randomBytes(8 * MiB));
  await h.agent.start();
  await h.agent.drain(SET);
  // A page written in place: the capture finds the file changed and reads it as a delta of what the target holds.
  const fd = openSync(abs, "r+");
  writeSync(fd, randomBytes(4096), 0, 4096, MiB);
  closeSync(fd);
  const ino = statSync(abs).ino;
  // Every read of the file appends 1 MiB first: the end moves by more than each read takes. Capped, so that a read
  // that follows the file fails this test instead of running forever.
  let appended = 0;
  const probe = await open(join(h.state.path, ".probe"), "w");
  const prototype = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<unknown> };
  await probe.close();
  const realRead = prototype.read;
  vi.spyOn(prototype, "read").mockImplementation(function (this: { fd: number }, ...args: unknown[]) {
    if (appended < 400 && fstatSync(this.fd).ino === ino) {
      appendFileSync(abs, randomBytes(MiB));
      appended++;
    }
    return realRead.apply(this, args);
  });
  const told: number[] = [];
  const changing: string[] = [];
  const { changes } = await capture(h.journal, spec(), "db.wal", {
    beforeRead: (size) => told.push(size),
    onChangingWhileRead: (path) => changing.push(path),
  });
  const put = onlyPut(changes);
  expect(changing).toEqual(["db.wal"]);
  // Read through the delta's scan (the reads that append), and not followed to the cap.
  expect(appended).toBeGreaterThan(0);
  expect(appended).toBeLessThan(400);
  // What was read: the file as it was when the last read began, whole or as a delta of it.
  expect(put.size).toBe(told.at(-1));
  expect(put.sha256).toBe(sha(readFileSync(abs).subarray(0, put.size)));
});

it("does not take a read as whole when the file holds bytes past a stale stat's size", async () => {
  h = agentHarness(SET);
  const abs = join(h.src.path, "share.img");
  writeFileSync(abs, randomBytes(2 * MiB));
  // The file grows on the server; this host's cached attributes still say 2 MiB, before the read and after it.
  const { lstat } = await vi.importActual<typeof FsPromises>("node:fs/promises");
  stale = { path: abs, stat: await lstat(abs, { bigint: true }) };
  appendFileSync(abs, randomBytes(MiB));
  const changing: string[] = [];
  const { changes } = await capture(h.journal, spec(), "share.img", { onChangingWhileRead: (path) => changing.push(path) });
  expect(onlyPut(changes).size).toBe(2 * MiB);
  expect(changing).toEqual(["share.img"]);
  // With attributes that tell the truth, the file is read whole and taken as stable.
  stale = undefined;
  const fresh: string[] = [];
  const again = await capture(h.journal, spec(), "share.img", { onChangingWhileRead: (path) => fresh.push(path) });
  expect(onlyPut(again.changes).size).toBe(3 * MiB);
  expect(fresh).toEqual([]);
});

it("does not take a delta's read as whole when a known file holds bytes past a stale stat's size", async () => {
  h = agentHarness(SET);
  const abs = join(h.src.path, "page.db");
  // Known to the index and large enough for a delta, small enough to travel inline when whole.
  writeFileSync(abs, randomBytes(512 * 1024));
  await h.agent.start();
  await h.agent.drain(SET);
  const fd = openSync(abs, "r+");
  writeSync(fd, randomBytes(4096), 0, 4096, 64 * 1024);
  closeSync(fd);
  const { lstat } = await vi.importActual<typeof FsPromises>("node:fs/promises");
  stale = { path: abs, stat: await lstat(abs, { bigint: true }) };
  appendFileSync(abs, randomBytes(64 * 1024));
  // The open file's attributes are the same cache's: the delta's read ends at the stale size too.
  const ino = statSync(abs).ino;
  const probe = await open(join(h.state.path, ".probe"), "w");
  const prototype = Object.getPrototypeOf(probe) as { stat: (...args: unknown[]) => Promise<{ size: number; ino: number }> };
  await probe.close();
  const realStat = prototype.stat;
  vi.spyOn(prototype, "stat").mockImplementation(async function (this: unknown, ...args: unknown[]) {
    const st = await realStat.apply(this, args);
    return st.ino === ino ? Object.assign(st, { size: 512 * 1024 }) : st;
  });
  const changing: string[] = [];
  const { changes } = await capture(h.journal, spec(), "page.db", { onChangingWhileRead: (path) => changing.push(path) });
  const put = onlyPut(changes);
  expect(put.delta).toBeDefined();
  expect(put.size).toBe(512 * 1024);
  expect(changing).toEqual(["page.db"]);
});
