// A corrupt journal: opening it, or meeting the damage while running, names
// the file and what the next start does (sets it aside: journal-aside.ts), and
// the agent's owner is told to stop it.

import { closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { Agent } from "../../agent/agent.ts";
import { JournalCorruptError } from "../../agent/journal-faults.ts";
import { Journal } from "../../agent/journal.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

const SET = "docs";
const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

/** A journal with a few pages of index, closed (so its WAL is folded in), then pages [from, to) overwritten. */
function damagedJournal(from: number, to: number): { dir: string; file: string } {
  const state = tempDir("tidemark-state-");
  cleanup.push(() => state.remove());
  const journal = Journal.open(state.path);
  journal.append(
    SET,
    Array.from({ length: 300 }, (_, i) => ({ op: "mkdir" as const, path: `folder-${i}/with/a/long/enough/name`, mode: 0o755, mtimeNs: "1" })),
  );
  journal.close();
  const file = join(state.path, "journal.db");
  const fd = openSync(file, "r+");
  for (let page = from; page < to; page++) writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, page * 4096);
  closeSync(fd);
  return { dir: state.path, file };
}

it.each([
  ["its header", 0, 1],
  ["its schema page", 1, 2],
])("refuses to open a journal damaged in %s, naming the file and what the next start does", (_where, from, to) => {
  const { dir, file } = damagedJournal(from, to);
  let thrown: unknown;
  try {
    Journal.open(dir);
  } catch (error) {
    thrown = error;
  }
  expect(thrown).toBeInstanceOf(JournalCorruptError);
  const message = (thrown as Error).message;
  expect(message).toContain(`the journal ${file} is corrupt`);
  expect(message).toContain(`sets it aside (renamed ${file}.corrupt-<time>`);
});

it("fails the agent's start, naming the file, when the damage is met by the first scan", async () => {
  const { dir, file } = damagedJournal(2, 4);
  const journal = Journal.open(dir);
  cleanup.push(() => journal.close());
  const src = tempDir("tidemark-src-");
  cleanup.push(() => src.remove());
  const fatal: Error[] = [];
  const agent = new Agent({
    sets: [{ name: SET, root: src.path, exclude: [] }],
    journal,
    transport: { stage: async () => undefined, send: async () => undefined },
    monitorEnabled: false,
    onFatal: (error) => fatal.push(error),
  });
  await expect(agent.start()).rejects.toThrow(`the journal ${file} is corrupt`);
  expect(fatal).toEqual([expect.any(JournalCorruptError)]);
});

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

it("tells the agent's owner to stop when a write meets a corrupt journal while running", async () => {
  h = agentHarness(SET);
  const fatal: Error[] = [];
  let corrupt = false;
  const corruption = () => Object.assign(new Error("database disk image is malformed"), { code: "ERR_SQLITE_ERROR", errcode: 11, errstr: "database disk image is malformed" });
  h.restart(
    { onFatal: (error) => fatal.push(error) },
    {
      onWrite: () => {
        if (corrupt) throw corruption();
      },
    },
  );
  const harness = h;
  corrupt = true;
  writeFileSync(join(harness.src.path, "a.txt"), "never journaled");
  harness.agent.hint(SET, "a.txt");
  await vi.waitFor(() => expect(fatal).toHaveLength(1), { timeout: 30_000 });
  expect(fatal[0]).toBeInstanceOf(JournalCorruptError);
  expect(fatal[0]?.message).toContain(`the journal ${harness.journal.path} is corrupt (database disk image is malformed)`);
});
