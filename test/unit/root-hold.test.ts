// A set's root that disappears or is swapped (a disk unmounted, the folder
// renamed away, deleted, replaced by another folder, a symlink pointed
// elsewhere) must never read as "every file was deleted": the set is held,
// nothing of it is journaled from the bad root on any path (watcher, scan,
// verify --repair, mirrors, the recovery after a lost or restored journal, the
// continuity check at start), and it converges once the root is back or an
// operator accepted the new one.

import { cpSync, mkdirSync, readdirSync, renameSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { recoverSet, runVerify } from "../../agent/operations.ts";
import { acceptRoot } from "../../agent/accept-root.ts";
import type { RootState } from "../../agent/set-roots.ts";
import { findProblems, type SetFacts } from "../../agent/set-health.ts";
import { rootHolds } from "../../agent/doctor.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget, tempDir, type TreePicture } from "../support/tree.ts";

const SET = "data";
let h: Harness | undefined;
let base: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  await h?.close();
  base?.remove();
  h = undefined;
  base = undefined;
});

/** The set's root (a folder, or a symlink to one) and the folders around it. */
interface Place {
  readonly root: string;
  /** Where a folder is moved away to. */
  readonly away: string;
  /** The folder a symlinked root points at first. */
  readonly real: string;
  readonly symlinked: boolean;
}

function place(symlinked: boolean): Place {
  base = tempDir("tidemark-roots-");
  const p = { root: join(base.path, "root"), away: join(base.path, "away"), real: join(base.path, "real"), symlinked };
  if (symlinked) {
    mkdirSync(p.real);
    symlinkSync(p.real, p.root);
  } else mkdirSync(p.root);
  return p;
}

function fill(root: string): void {
  mkdirSync(join(root, "docs", "old"), { recursive: true });
  writeFileSync(join(root, "a.txt"), "alpha");
  writeFileSync(join(root, "docs", "b.txt"), "bravo");
  writeFileSync(join(root, "docs", "old", "c.txt"), "charlie");
}

/** A trigger: what happens to the root, the state it is held in, and how the set gets its root back. */
interface Trigger {
  readonly name: string;
  readonly symlinked?: boolean;
  /** With a lost journal the agent has no identity to compare: only these are caught there (by the target holding files). */
  readonly caughtWithoutJournal: boolean;
  readonly held: RootState;
  apply(p: Place): void;
  /** Puts the original folder back (true), or leaves the operator to accept the folder there now (false). */
  restore(p: Place): boolean;
}

const TRIGGERS: Trigger[] = [
  {
    name: "root renamed away",
    caughtWithoutJournal: true,
    held: "root-missing",
    apply: (p) => renameSync(p.root, p.away),
    restore: (p) => {
      renameSync(p.away, p.root);
      return true;
    },
  },
  {
    name: "root deleted",
    caughtWithoutJournal: true,
    held: "root-missing",
    apply: (p) => {
      cpSync(p.root, p.away, { recursive: true, preserveTimestamps: true });
      rmSync(p.root, { recursive: true });
    },
    restore: (p) => {
      // Restored from a copy: another folder as far as the agent can tell, accepted by the operator.
      cpSync(p.away, p.root, { recursive: true, preserveTimestamps: true });
      return false;
    },
  },
  {
    name: "root replaced by an empty folder (an unmounted disk's mount point)",
    caughtWithoutJournal: true,
    held: "root-changed",
    apply: (p) => {
      renameSync(p.root, p.away);
      mkdirSync(p.root);
    },
    restore: (p) => {
      rmSync(p.root, { recursive: true });
      renameSync(p.away, p.root);
      return true;
    },
  },
  {
    name: "root replaced by a different folder with files",
    caughtWithoutJournal: false,
    held: "root-changed",
    apply: (p) => {
      renameSync(p.root, p.away);
      mkdirSync(p.root);
      writeFileSync(join(p.root, "other.txt"), "another disk");
    },
    restore: (p) => {
      rmSync(p.root, { recursive: true });
      renameSync(p.away, p.root);
      return true;
    },
  },
  {
    name: "symlinked root re-pointed",
    symlinked: true,
    caughtWithoutJournal: false,
    held: "root-changed",
    apply: (p) => {
      mkdirSync(p.away);
      writeFileSync(join(p.away, "elsewhere.txt"), "elsewhere");
      unlinkSync(p.root);
      symlinkSync(p.away, p.root);
    },
    restore: (p) => {
      unlinkSync(p.root);
      symlinkSync(p.real, p.root);
      return true;
    },
  },
];

/** The agent harness on a set at p.root, replicated once; returns the target's picture then. */
async function replicated(p: Place, store = new MemoryStore()): Promise<{ harness: Harness; before: TreePicture }> {
  const harness = agentHarness(SET, { sets: [{ name: SET, root: p.root, exclude: [] }], targetStatus: (set) => readSetStatus(store, set) }, { store });
  h = harness;
  fill(p.root);
  await harness.agent.start();
  await harness.agent.drain(SET);
  const before = await pictureOfTarget(harness.store, SET);
  expect(before).toEqual(await pictureOfSource(p.root));
  expect(Object.keys(before)).toContain("docs/old/c.txt");
  return { harness, before };
}

/** The paths the watcher would report on an unmount: every entry gone, and the folders. */
function unlinkEvents(harness: Harness): void {
  for (const path of ["a.txt", "docs", "docs/b.txt", "docs/old", "docs/old/c.txt"]) harness.agent.hint(SET, path);
}

/** Brings the root back (or accepts what is there), resumes the set and checks the target converges on the source. */
async function converges(harness: Harness, p: Place, trigger: Trigger, options: { recoveryOwed?: boolean } = {}): Promise<void> {
  const back = trigger.restore(p);
  if (!back) await acceptRoot(harness.journal, { name: SET, root: p.root, exclude: [] });
  // What is journaled from now on: a root back as it left journals no change of a file (nothing is sent again).
  const journaled: string[] = [];
  const append = harness.journal.append.bind(harness.journal);
  harness.journal.append = (set, changes) => {
    journaled.push(...changes.map((change) => change.op));
    return append(set, changes);
  };
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  expect(harness.journal.roots.held(SET)).toBeUndefined();
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(p.root));
  if (back && options.recoveryOwed !== true) expect(journaled.filter((op) => op === "put" || op === "delete" || op === "mkdir" || op === "rename")).toEqual([]);
}

function expectHeld(harness: Harness, trigger: Trigger): void {
  const hold = harness.journal.roots.held(SET);
  expect(hold?.state).toBe(trigger.held);
  expect(hold?.root).toBe(join(base?.path ?? "", "root"));
}

describe.each(TRIGGERS)("$name", (trigger) => {
  it("watcher: the unmount's events journal nothing, the set is held, and it converges once the root is back", async () => {
    const p = place(trigger.symlinked === true);
    const { harness, before } = await replicated(p);
    trigger.apply(p);
    unlinkEvents(harness);
    await harness.agent.processHints(SET).catch(() => undefined);
    await harness.agent.drain(SET);
    expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
    expect((await harness.agent.checkRoot(SET))?.state).toBe(trigger.held);
    expectHeld(harness, trigger);
    // Events while held journal nothing either.
    unlinkEvents(harness);
    expect(await harness.agent.processHints(SET)).toBe(0);
    await converges(harness, p, trigger);
  });

  it("agent restart while the root is gone: the start holds the set and journals nothing", async () => {
    const p = place(trigger.symlinked === true);
    const { harness, before } = await replicated(p);
    await harness.shutdown();
    trigger.apply(p);
    harness.restart({ sets: [{ name: SET, root: p.root, exclude: [] }], targetStatus: (set) => readSetStatus(harness.store, set) });
    await harness.agent.start();
    await harness.agent.drain(SET);
    expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
    expectHeld(harness, trigger);
    await converges(harness, p, trigger);
  });

  it("scan: a barrier scan of the bad root journals nothing and holds the set", async () => {
    const p = place(trigger.symlinked === true);
    const { harness, before } = await replicated(p);
    trigger.apply(p);
    const report = await harness.agent.scan(SET);
    expect(report.changes).toBe(0);
    await harness.agent.drain(SET);
    expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
    expectHeld(harness, trigger);
    await converges(harness, p, trigger);
  });

  it("verify --repair and mirrors are refused while held, naming the hold", async () => {
    const p = place(trigger.symlinked === true);
    const { harness, before } = await replicated(p);
    const indexed = harness.journal.index.entryCount(SET);
    trigger.apply(p);
    await expect(runVerify(harness.operations(), SET, { deep: false, repair: true, orphans: "delete" })).rejects.toThrow(new RegExp(`held \\(${trigger.held}\\).*accept-root ${SET}`));
    await expect(harness.agent.fullMirror(SET, "full mirror requested")).rejects.toThrow(/held/);
    // Refused before the index was cleared: it still tells the root's files from an empty mount point.
    expect(harness.journal.index.entryCount(SET)).toBe(indexed);
    await expect(recoverSet(harness.operations(), SET, "test", "diff", "delete")).rejects.toThrow(/held/);
    await expect(harness.agent.insertMarker(SET, { fields: { action: "snapshot", timeoutSeconds: 0 } })).rejects.toThrow(/no marker is journaled.*held|held.*no marker is journaled/);
    await harness.agent.drain(SET);
    expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
    expectHeld(harness, trigger);
    // The recovery refused stays owed and runs once the root is back (the harness's: a full mirror).
    expect(harness.journal.recoveries.of(SET)).toBeDefined();
    await converges(harness, p, trigger, { recoveryOwed: true });
  });

  it("continuity check at start (journal restored from an older copy): no generation's recovery runs from the bad root", async () => {
    const p = place(trigger.symlinked === true);
    const { harness, before } = await replicated(p);
    await harness.shutdown();
    const copy = tempDir("tidemark-state-copy-");
    try {
      cpSync(harness.state.path, copy.path, { recursive: true });
      // The target moves on beyond the copy.
      harness.restart({ sets: [{ name: SET, root: p.root, exclude: [] }] });
      await harness.agent.start();
      writeFileSync(join(p.root, "d.txt"), "delta");
      await harness.agent.scan(SET);
      await harness.agent.drain(SET);
      await harness.shutdown();
      rmSync(harness.state.path, { recursive: true });
      cpSync(copy.path, harness.state.path, { recursive: true });
    } finally {
      copy.remove();
    }
    const target = await pictureOfTarget(harness.store, SET);
    expect(Object.keys(target)).toEqual(expect.arrayContaining([...Object.keys(before), "d.txt"]));
    trigger.apply(p);
    let recovering: Promise<void> | undefined;
    harness.restart({
      sets: [{ name: SET, root: p.root, exclude: [] }],
      targetStatus: (set) => readSetStatus(harness.store, set),
      recover: (set, reason, owed, resyncPending, compare) => {
        recovering = recoverSet(harness.operations(), set, reason, "diff", "delete", resyncPending, compare);
        return recovering;
      },
    });
    await harness.agent.start();
    // The continuity check before a send waits for the root: the hold is the drain's error.
    await expect(harness.agent.drain(SET)).rejects.toThrow(/held/);
    expect(recovering).toBeUndefined();
    expect(await pictureOfTarget(harness.store, SET)).toEqual(target);
    expectHeld(harness, trigger);
    if (!trigger.restore(p)) await acceptRoot(harness.journal, { name: SET, root: p.root, exclude: [] });
    expect((await harness.agent.checkRoot(SET))).toBeUndefined();
    await harness.agent.checkContinuity(SET);
    await recovering;
    await harness.agent.drain(SET);
    expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(p.root));
  });

  // Without a journal nothing tells a swapped folder holding files from the set's own (README: root rules): only a
  // missing or empty root is caught then, by the target holding the set's files.
  it.runIf(trigger.caughtWithoutJournal)("lost journal: the recovery never mirrors a bad root over the target", async () => {
    const p = place(trigger.symlinked === true);
    const { harness, before } = await replicated(p);
    await harness.shutdown();
    rmSync(harness.state.path, { recursive: true });
    mkdirSync(harness.state.path);
    trigger.apply(p);
    let recovering: Promise<void> | undefined;
    harness.restart({
      sets: [{ name: SET, root: p.root, exclude: [] }],
      targetStatus: (set) => readSetStatus(harness.store, set),
      recover: (set, reason, owed, resyncPending, compare) => {
        recovering = recoverSet(harness.operations(), set, reason, "diff", "delete", resyncPending, compare);
        return recovering;
      },
    });
    await harness.agent.start();
    await recovering?.catch(() => undefined);
    await harness.agent.drain(SET).catch(() => undefined);
    expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
    expect(harness.journal.roots.held(SET)).toBeDefined();
  });
});

it("a root emptied in place is held as root-empty; accept-root then replicates the deletes", async () => {
  const p = place(false);
  const { harness, before } = await replicated(p);
  for (const name of readdirSync(p.root)) rmSync(join(p.root, name), { recursive: true });
  unlinkEvents(harness);
  await harness.agent.processHints(SET).catch(() => undefined);
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
  expect(harness.journal.roots.held(SET)?.state).toBe("root-empty");
  // A file written into the emptied folder does not end the hold: the old files' deletes would go with it.
  writeFileSync(join(p.root, "fresh.txt"), "fresh");
  expect((await harness.agent.checkRoot(SET))?.state).toBe("root-empty");
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
  rmSync(join(p.root, "fresh.txt"));
  await acceptRoot(harness.journal, { name: SET, root: p.root, exclude: [] });
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual({});
  // The accepted root is settled by that scan: emptied again, it is held again.
  writeFileSync(join(p.root, "new.txt"), "new");
  await harness.agent.scan(SET);
  rmSync(join(p.root, "new.txt"));
  await harness.agent.scan(SET);
  expect(harness.journal.roots.held(SET)?.state).toBe("root-empty");
});

it("accept-root of a different folder journals the real differences, and a later real deletion is replicated", async () => {
  const p = place(false);
  const { harness } = await replicated(p);
  renameSync(p.root, p.away);
  mkdirSync(join(p.root, "docs"), { recursive: true });
  writeFileSync(join(p.root, "docs", "b.txt"), "bravo");
  writeFileSync(join(p.root, "new.txt"), "new disk");
  await harness.agent.scan(SET);
  expect(harness.journal.roots.held(SET)?.state).toBe("root-changed");
  const accepted = await acceptRoot(harness.journal, { name: SET, root: p.root, exclude: [] });
  expect(accepted.previous?.state).toBe("root-changed");
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(p.root));
  rmSync(join(p.root, "docs", "b.txt"));
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(Object.keys(await pictureOfTarget(harness.store, SET))).not.toContain("docs/b.txt");
  expect(harness.journal.roots.held(SET)).toBeUndefined();
});

it("a root whose device number changed but not its inode is not held: its entries are there, and it is recorded again", async () => {
  const p = place(false);
  const { harness } = await replicated(p);
  const recorded = harness.journal.roots.of(SET)?.identity;
  expect(recorded).toBeDefined();
  // Recorded without a birth time (a journal from before them): the sample of entries decides.
  harness.journal.atomically(() => harness.journal.roots.record(SET, p.root, { dev: "4242", ino: recorded?.ino ?? "", realPath: p.root }));
  rmSync(join(p.root, "docs", "old", "c.txt"));
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(harness.journal.roots.held(SET)).toBeUndefined();
  expect(harness.journal.roots.of(SET)?.identity?.dev).toBe(recorded?.dev);
  expect(Object.keys(await pictureOfTarget(harness.store, SET))).not.toContain("docs/old/c.txt");
  // With one of its two top-level entries there (a.txt, not docs), the same renumbered device is another folder.
  harness.journal.atomically(() => harness.journal.roots.record(SET, p.root, { dev: "4242", ino: recorded?.ino ?? "", realPath: p.root }));
  renameSync(join(p.root, "docs"), join(p.away + "-docs"));
  expect((await harness.agent.checkRoot(SET))?.state).toBe("root-changed");
});

it("a set held as root-unreadable journals none of the watcher's events, and resumes once the root reads again", async () => {
  const p = place(false);
  const { harness, before } = await replicated(p);
  harness.journal.atomically(() => harness.journal.roots.hold(SET, p.root, { ok: false, state: "root-unreadable", expected: "x", found: "EACCES" }));
  unlinkEvents(harness);
  expect(await harness.agent.processHints(SET)).toBe(0);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
  // Readable again, it resumes by itself.
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
});

it("status names a held set with its state, root, what was expected and found, since when and what to do", () => {
  const facts: SetFacts = {
    set: SET,
    counters: { nextSeq: 5, sentSeq: 4, backlogRecords: 0, backlogBytes: 0, messagesSent: 1, bytesSent: 10, lastSendError: null, overflowed: false, watcherProblem: null },
    generation: { id: "g", sinceSeq: 0 },
    rootHold: { set: SET, state: "root-changed", root: "/mnt/data", expected: "folder /mnt/data (device 2049, inode 2)", found: "folder /mnt/data (device 64768, inode 1234)", since: "2026-12-02T00:00:00.000Z" },
    target: { status: { set: SET, lastSeq: 4, state: "in-sync", appliedRecords: 4, appliedBytes: 10, snapshotGen: 0, snapshotsRetained: 0, updatedAt: "2026-12-02T00:00:00.000Z", generation: "g" } },
    now: new Date(),
  };
  const problems = findProblems(facts);
  expect(problems.map((problem) => problem.kind)).toEqual(["root-changed"]);
  expect(problems[0]?.message).toMatch(/held since 2026-12-02T00:00:00.000Z: the root \/mnt\/data.*expected folder \/mnt\/data \(device 2049, inode 2\).*found folder \/mnt\/data \(device 64768, inode 1234\).*accept-root data/);
});

it("doctor names the sets held in the state folder's journal", async () => {
  const p = place(false);
  const { harness } = await replicated(p);
  expect(rootHolds(harness.state.path)).toEqual([]);
  renameSync(p.root, p.away);
  await harness.agent.scan(SET);
  expect(rootHolds(harness.state.path)).toEqual([expect.objectContaining({ set: SET, state: "root-missing", root: p.root })]);
});

it("a root held empty is not released by one name the set had written into it again: most of its top-level entries must be back", async () => {
  const p = place(false);
  const { harness, before } = await replicated(p);
  mkdirSync(p.away);
  for (const name of readdirSync(p.root)) renameSync(join(p.root, name), join(p.away, name));
  expect((await harness.agent.checkRoot(SET))?.state).toBe("root-empty");
  // An application making its file again under the old name: one of the two names the set had at its top.
  writeFileSync(join(p.root, "a.txt"), "made again");
  expect((await harness.agent.checkRoot(SET))?.state).toBe("root-empty");
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
  renameSync(join(p.away, "docs"), join(p.root, "docs"));
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
});

it("a root held empty resumes by itself once the entries it knows are back, journaling no change", async () => {
  const p = place(false);
  const { harness, before } = await replicated(p);
  mkdirSync(p.away);
  for (const name of readdirSync(p.root)) renameSync(join(p.root, name), join(p.away, name));
  expect((await harness.agent.checkRoot(SET))?.state).toBe("root-empty");
  for (const name of readdirSync(p.away)) renameSync(join(p.away, name), join(p.root, name));
  const journaled: string[] = [];
  const append = harness.journal.append.bind(harness.journal);
  harness.journal.append = (set, changes) => {
    journaled.push(...changes.map((change) => change.op));
    return append(set, changes);
  };
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(journaled).toEqual([]);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
});

it("a set pointed at another folder (its config's path changed, or a copied state folder run on a copied tree) names that folder as the root held", async () => {
  h = agentHarness(SET);
  writeFileSync(join(h.src.path, "a.txt"), "alpha");
  await h.agent.start();
  await h.agent.drain(SET);
  base = tempDir("tidemark-roots-");
  const other = join(base.path, "copy");
  cpSync(h.src.path, other, { recursive: true });
  h.restart({ sets: [{ name: SET, root: other, exclude: [] }] });
  const hold = (await h.agent.checkRoot(SET));
  expect(hold?.state).toBe("root-changed");
  // The folder there now is what the line names as the root; the folder replicated is what was expected.
  expect(hold?.root).toBe(other);
  expect(hold?.expected).toContain(h.src.path);
  expect(hold?.found).toContain(other);
});
