// What tells the set's root folder from another one at the same path
// (set-roots.ts): a folder deleted and made again, or another file system's,
// can get the recorded inode number back, so the folder's birth time is part
// of its identity where the file system records one; a device number that
// changed under the same inode needs the birth time or most of the entries the
// journal knows at the top of the set. Inode reuse cannot be forced portably:
// the root's stat is a stand-in showing the identity a test says.

import { mkdirSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { acceptRoot } from "../../agent/accept-root.ts";
import type { RootIdentity, StatRoot } from "../../agent/set-roots.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget, tempDir, type TreePicture } from "../support/tree.ts";

const SET = "data";
/** A birth time the stand-in shows: 2025-12-02T12:00:00 and 1 ns. */
const BORN = 1_764_676_800_000_000_001n;
/** The names at the top of the set: as many as the sample of a renumbered device takes. */
const TOP = ["a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "f.txt", "docs", "src"];

let h: Harness | undefined;
let base: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  await h?.close();
  base?.remove();
  h = undefined;
  base = undefined;
});

/** What the stand-in stat shows for the root: its real device and inode unless given, and the birth time given (0n: none recorded). */
interface Shown {
  dev?: bigint;
  ino?: bigint;
  birthtimeNs: bigint;
}

interface Rig {
  readonly harness: Harness;
  readonly root: string;
  /** Where entries are moved away to. */
  readonly away: string;
  readonly before: TreePicture;
  /** The identity recorded at the first check. */
  readonly recorded: RootIdentity;
  show(shown: Shown): void;
}

/** A set of the TOP entries replicated once, its root stat showing `first`. */
async function rig(first: Shown): Promise<Rig> {
  base = tempDir("tidemark-root-identity-");
  const root = join(base.path, "root");
  const away = join(base.path, "away");
  mkdirSync(root);
  mkdirSync(away);
  let shown = first;
  const statRoot: StatRoot = (path) => {
    const st = statSync(path, { bigint: true });
    return { dev: shown.dev ?? st.dev, ino: shown.ino ?? st.ino, birthtimeNs: shown.birthtimeNs, isDirectory: () => st.isDirectory() };
  };
  const harness = agentHarness(SET, { sets: [{ name: SET, root, exclude: [] }] }, { journal: { statRoot } });
  h = harness;
  for (const name of TOP) {
    if (name.endsWith(".txt")) writeFileSync(join(root, name), name);
    else {
      mkdirSync(join(root, name));
      writeFileSync(join(root, name, "inner.txt"), name);
    }
  }
  await harness.agent.start();
  await harness.agent.drain(SET);
  const before = await pictureOfTarget(harness.store, SET);
  expect(before).toEqual(await pictureOfSource(root));
  const recorded = harness.journal.roots.of(SET)?.identity;
  if (!recorded) throw new Error("the root's identity was not recorded at the start");
  return { harness, root, away, before, recorded, show: (next) => (shown = next) };
}

/** Records the root as on another device number (a renumbering after a reboot), with the birth time given. */
function renumber(r: Rig, birthNs: string): void {
  r.harness.journal.atomically(() => r.harness.journal.roots.record(SET, r.root, { ...r.recorded, dev: "4242", birthNs }));
}

function moveAway(r: Rig, names: readonly string[]): void {
  for (const name of names) renameSync(join(r.root, name), join(r.away, name));
}

function moveBack(r: Rig, names: readonly string[]): void {
  for (const name of names) renameSync(join(r.away, name), join(r.root, name));
}

it("records the root's birth time with its device and inode", async () => {
  const r = await rig({ birthtimeNs: BORN });
  expect(r.recorded.birthNs).toBe(String(BORN));
});

it("a folder deleted and made again on the same device and inode, born later, is held root-changed, naming both birth times", async () => {
  const r = await rig({ birthtimeNs: BORN });
  const { harness } = r;
  // rm -rf and mkdir: the new folder gets the old inode number back, 3 ms later.
  rmSync(r.root, { recursive: true });
  mkdirSync(r.root);
  writeFileSync(join(r.root, "other.txt"), "another folder");
  r.show({ dev: BigInt(r.recorded.dev), ino: BigInt(r.recorded.ino), birthtimeNs: BORN + 3_000_000n });
  const report = await harness.agent.scan(SET);
  expect(report.changes).toBe(0);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(r.before);
  const hold = harness.journal.roots.held(SET);
  expect(hold?.state).toBe("root-changed");
  expect(hold?.expected).toBe(`folder ${r.recorded.realPath} (device ${r.recorded.dev}, inode ${r.recorded.ino}, born 2025-12-02T12:00:00.000000001Z)`);
  expect(hold?.found).toBe(`folder ${r.recorded.realPath} (device ${r.recorded.dev}, inode ${r.recorded.ino}, born 2025-12-02T12:00:00.003000001Z)`);
  // Accepted, the new folder's birth time is recorded and its differences journaled.
  expect((await acceptRoot(harness.journal, { name: SET, root: r.root, exclude: [] })).identity.birthNs).toBe(String(BORN + 3_000_000n));
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  await harness.agent.scan(SET);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(await pictureOfSource(r.root));
});

it("a journal from before birth times records the root's at the next good check, without holding it, and compares it from then on", async () => {
  const r = await rig({ birthtimeNs: BORN });
  const { harness } = r;
  await harness.shutdown();
  const db = new DatabaseSync(join(harness.state.path, "journal.db"));
  try {
    db.exec("ALTER TABLE set_roots DROP COLUMN birth_ns");
  } finally {
    db.close();
  }
  harness.restart();
  expect(harness.journal.roots.of(SET)?.identity).toEqual({ dev: r.recorded.dev, ino: r.recorded.ino, realPath: r.recorded.realPath });
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  expect(harness.journal.roots.held(SET)).toBeUndefined();
  expect(harness.journal.roots.of(SET)?.identity?.birthNs).toBe(String(BORN));
  r.show({ birthtimeNs: BORN + 1n });
  expect((await harness.agent.checkRoot(SET))?.state).toBe("root-changed");
});

it("a renumbered device with no birth time known: 1 of 8 sampled entries there is held root-changed, most of them there is the same folder", async () => {
  const r = await rig({ birthtimeNs: 0n });
  const { harness } = r;
  expect(r.recorded.birthNs).toBe("0");
  renumber(r, "0");
  // A different folder sharing one common name with the set.
  moveAway(r, TOP.slice(1));
  expect((await harness.agent.checkRoot(SET))?.state).toBe("root-changed");
  expect(await harness.agent.scan(SET).then((report) => report.changes)).toBe(0);
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(r.before);
  // Half of them is not most.
  moveBack(r, TOP.slice(1, 4));
  expect((await harness.agent.checkRoot(SET))?.state).toBe("root-changed");
  moveBack(r, TOP.slice(4, 5));
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  expect(harness.journal.roots.of(SET)?.identity?.dev).toBe(r.recorded.dev);
});

it("a renumbered device with the birth time known on both sides: the same birth time is the same folder, another is root-changed whatever entries are there", async () => {
  const r = await rig({ birthtimeNs: BORN });
  const { harness } = r;
  renumber(r, String(BORN));
  moveAway(r, TOP.slice(1));
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  expect(harness.journal.roots.of(SET)?.identity).toEqual(r.recorded);
  moveBack(r, TOP.slice(1));
  renumber(r, String(BORN + 1n));
  const hold = (await harness.agent.checkRoot(SET));
  expect(hold?.state).toBe("root-changed");
  expect(hold?.expected).toMatch(/device 4242, inode \d+, born 2025-12-02T12:00:00.000000002Z\)$/);
  expect(hold?.found).toMatch(/born 2025-12-02T12:00:00.000000001Z\)$/);
});

it("a birth time unknown on either side falls back to device, inode and the sample", async () => {
  const r = await rig({ birthtimeNs: 0n });
  const { harness } = r;
  // Recorded unknown, known now (a file system that began recording them): the same folder, its birth time learned.
  r.show({ birthtimeNs: BORN });
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  expect(harness.journal.roots.of(SET)?.identity?.birthNs).toBe(String(BORN));
  // Recorded known, unknown now: the same folder, the birth time recorded kept.
  r.show({ birthtimeNs: 0n });
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  expect(harness.journal.roots.of(SET)?.identity?.birthNs).toBe(String(BORN));
  // ... and on a renumbered device the sample decides.
  renumber(r, String(BORN));
  moveAway(r, TOP.slice(1));
  const hold = (await harness.agent.checkRoot(SET));
  expect(hold?.state).toBe("root-changed");
  expect(hold?.found).not.toMatch(/born/);
  moveBack(r, TOP.slice(1));
  expect((await harness.agent.checkRoot(SET))).toBeUndefined();
  expect(harness.journal.roots.of(SET)?.identity?.birthNs).toBe("0");
  // Another inode is another folder, whatever the birth times.
  r.show({ ino: BigInt(r.recorded.ino) + 1n, birthtimeNs: 0n });
  expect((await harness.agent.checkRoot(SET))?.state).toBe("root-changed");
});
