// A folder moved within the set while the journal nears its limit: the
// moved-in folder's scan stops part way, and nothing it claimed (a rename it
// did not journal) or left (the old folder's entries) is lost. The catch-up
// scan ends with the target and the index exact.

import { randomBytes } from "node:crypto";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget } from "../support/tree.ts";

const SET = "app";
const MiB = 1024 * 1024;
const LIMIT = 2 * MiB;
let h: Harness;

const write = (path: string, content: Buffer | string) => writeFileSync(join(h.src.path, path), content);

beforeEach(async () => {
  h = agentHarness(SET, { journalLimitBytes: LIMIT });
  mkdirSync(join(h.src.path, "a"));
  write("a/z.bin", randomBytes(2 * MiB));
  await h.agent.start();
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
});

afterEach(() => h.close());

it("deletes the old folder's large file after a moved-in folder's scan stopped at the limit", async () => {
  // Something in the backlog, so a new large file passes the limit.
  write("note.txt", "waiting to be sent");
  h.agent.hint(SET, "note.txt");
  await h.agent.processHints(SET);
  renameSync(join(h.src.path, "a"), join(h.src.path, "b"));
  // New content, read (and stopped at) before the moved file in the same chunk.
  write("b/y.bin", randomBytes(3 * MiB));
  for (const path of ["a", "b", "b/y.bin"]) h.agent.hint(SET, path);
  await h.agent.processHints(SET);
  expect(h.journal.sets.counters(SET).overflowed).toBe(true);

  await h.agent.drain(SET);
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect(await pictureOfTarget(h.store, SET)).toEqual(await pictureOfSource(h.src.path));
  expect(h.journal.index.entry(SET, "a/z.bin")).toBeUndefined();
  expect(h.journal.index.entry(SET, "a")).toBeUndefined();
  expect(h.journal.index.entry(SET, "b/z.bin")).toBeDefined();
  expect((await h.agent.scan(SET)).changes).toBe(0);
});
