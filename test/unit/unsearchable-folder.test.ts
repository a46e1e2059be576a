// A folder the agent's user may list but not search (r without x): its entries'
// names are read, none of them can be looked at. The agent names each as not
// replicated and journals no delete for it (what the target had stays), and
// `status` and `verify`, run as that same user, keep naming it: an lstat that
// fails with anything but ENOENT/ENOTDIR says nothing of whether the entry is
// gone (it said "gone" before: status dropped it, verify said "0 missing").
//
// Real permissions, no mocked fs: run as root (as CI may), the agent's scan and
// status's check run with the effective uid of nobody (seteuid, back to root
// after), as permissions do not stop root; run as another user, as that user.

import { chmodSync, chownSync, mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { notReplicated } from "../../agent/not-replicated.ts";
import { findProblems } from "../../agent/set-health.ts";
import { skippedNow } from "../../agent/skipped-names.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfTarget } from "../support/tree.ts";

const SET = "u";
const NOBODY = 65534;
const root = process.geteuid?.() === 0;
let h: Harness;

afterEach(async () => {
  // Root again even when a test timed out inside asUser (its finally never ran): later tests of this file run as root.
  if (root) process.seteuid?.(0);
  // Searchable again, so the temp folders can be removed.
  for (const dir of ["nox", "nolist"]) {
    try {
      chmodSync(join(h.src.path, dir), 0o700);
    } catch {
      // not made by this test
    }
  }
  await h.close();
});

function chownTree(path: string): void {
  chownSync(path, NOBODY, NOBODY);
  if (!statSync(path).isDirectory()) return;
  for (const name of readdirSync(path)) chownTree(join(path, name));
}

/** Runs fn as the agent's user: nobody when the tests run as root (who owns the set's and the journal's folders then). */
async function asAgentUser<T>(fn: () => T | Promise<T>): Promise<T> {
  if (!root) return await fn();
  process.seteuid?.(NOBODY);
  try {
    return await fn();
  } finally {
    process.seteuid?.(0);
  }
}

const write = (name: string, content: string) => writeFileSync(join(h.src.path, name), content);
const spec = () => ({ name: SET, root: h.src.path, exclude: [] });

it("names a file in a folder it may list but not search, in status and verify, and journals no delete for it", async () => {
  h = agentHarness(SET);
  write("ok.txt", "ok");
  mkdirSync(join(h.src.path, "nox"));
  write("nox/f", "hidden");
  await h.agent.scan(SET);
  await h.agent.drain(SET);
  expect(Object.keys(await pictureOfTarget(h.store, SET)).sort()).toEqual(["nox", "nox/f", "ok.txt"]);

  if (root) {
    chownTree(h.src.path);
    chownTree(h.state.path);
  }
  chmodSync(join(h.src.path, "nox"), 0o600);
  write("ok.txt", "ok v2");
  const report = await asAgentUser(() => h.agent.scan(SET));
  expect(report.skipped).toEqual([{ path: "nox/f", reason: expect.stringMatching(/^cannot be read: EACCES: permission denied, lstat /) as string }]);
  await h.agent.drain(SET);
  // No delete was journaled: the target keeps what it had of nox/f, and the index still knows it.
  expect(await pictureOfTarget(h.store, SET)).toMatchObject({ "nox/f": expect.anything() as unknown, "ok.txt": expect.anything() as unknown });
  expect(h.journal.index.entry(SET, "nox/f")).toBeDefined();

  // Status and verify as the agent's user (who cannot lstat nox/f either) still name it, with the agent's reason.
  const [listed, verifyList] = await asAgentUser(() => [skippedNow(h.journal.skippedNames, SET, h.src.path), notReplicated(h.journal, spec())] as const);
  const skipped = listed.map(({ path, reason }) => ({ path, reason }));
  expect(skipped).toEqual([{ path: "nox/f", reason: expect.stringContaining("EACCES: permission denied") as string }]);
  expect(verifyList).toEqual([{ path: "nox/f", reason: expect.stringContaining("cannot be read: EACCES") as string }]);
  const messages = findProblems({ set: SET, counters: h.journal.sets.counters(SET), generation: undefined, skipped, target: { error: "not asked" }, now: new Date() })
    .filter((p) => p.kind === "skipped-path")
    .map((p) => p.message);
  expect(messages).toEqual([expect.stringMatching(/^not replicated: nox\/f: cannot be read: EACCES: .* \(let the agent read it, or exclude it\)$/)]);

  // Searchable again: the next scan reads it, and it leaves the list.
  chmodSync(join(h.src.path, "nox"), 0o700);
  await asAgentUser(() => h.agent.scan(SET));
  expect(await asAgentUser(() => skippedNow(h.journal.skippedNames, SET, h.src.path))).toEqual([]);
});

it("takes off the list only what an lstat finds gone, and nothing below a folder the list names as unreadable", async () => {
  h = agentHarness(SET);
  mkdirSync(join(h.src.path, "nox"));
  write("nox/f", "hidden");
  mkdirSync(join(h.src.path, "nolist"));
  if (root) chownTree(h.src.path);
  chmodSync(join(h.src.path, "nox"), 0o600);
  chmodSync(join(h.src.path, "nolist"), 0o000);
  const unreadable = (what: string, path: string) => `cannot be read: EACCES: permission denied, ${what} '${join(h.src.path, path)}'`;
  h.journal.skippedNames.record(
    SET,
    "",
    [
      { path: "gone.txt", reason: unreadable("open", "gone.txt") },
      { path: "nolist", reason: unreadable("scandir", "nolist") },
      // What the watcher hints for a folder's own change of mode (a name below it that is not there).
      { path: "nolist/nolist", reason: unreadable("lstat", "nolist/nolist") },
      { path: "nox/f", reason: unreadable("lstat", "nox/f") },
      { path: "nox/gone", reason: unreadable("lstat", "nox/gone") },
    ],
    true,
  );
  const listed = await asAgentUser(() => skippedNow(h.journal.skippedNames, SET, h.src.path).map((entry) => entry.path));
  // nox/gone cannot be told from nox/f by its user: both stay named until a scan (which lists nox) finds one gone.
  expect(listed).toEqual(["nolist", "nox/f", "nox/gone"]);
  // Run as root (who sees everything), status names only what is there.
  if (root) expect(skippedNow(h.journal.skippedNames, SET, h.src.path).map((entry) => entry.path)).toEqual(["nolist", "nox/f"]);
});
