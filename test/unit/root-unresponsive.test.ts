// A set's root on a hard-mounted network file system whose server stopped
// answering: a stat of it never returns. The agent looks at roots off its
// thread, one look at a time per root and within a time limit: the set is
// held root-unresponsive (nothing of it journaled, deletes least of all), the
// other sets go on, status and doctor name it, the agent stops, and the set
// resumes once the root answers. The stand-in look never answers until the
// test says so; the time limit is a deadline the test fires by hand.

import { existsSync, mkdirSync, readdirSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import type { AgentOptions } from "../../agent/agent.ts";
import { rootHolds } from "../../agent/doctor.ts";
import type { RootDeadline } from "../../agent/root-watch.ts";
import type { RootLook, RootStat } from "../../agent/set-roots.ts";
import { findProblems } from "../../agent/set-health.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const HUNG = "hung";
const OTHER = "other";
const HOUR_MS = 3_600_000;

let h: Harness | undefined;
let base: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  await h?.close();
  base?.remove();
  h = undefined;
  base = undefined;
});

/** A root whose stat the test hangs and answers, and deadlines the test fires. */
interface Rig {
  readonly harness: Harness;
  readonly hungRoot: string;
  readonly otherRoot: string;
  /** Stats of the hung root asked for since it hangs. */
  readonly looks: () => number;
  /** From now on a stat of the hung root does not answer until `answer`. */
  hang(): void;
  /** The stat that did not answer answers now (with the root's real stat), and later ones at once. */
  answer(): void;
  /** Fires every time limit armed and not disarmed. */
  expire(): void;
}

/** Settles every promise callback queued (the stand-in look answers in callbacks only, no I/O). */
const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

async function rig(options: Partial<AgentOptions> = {}, onLook?: (root: string) => void): Promise<Rig> {
  base = tempDir("tidemark-root-unresponsive-");
  const hungRoot = join(base.path, "nfs");
  mkdirSync(hungRoot);
  writeFileSync(join(hungRoot, "a.txt"), "alpha");
  writeFileSync(join(hungRoot, "b.txt"), "bravo");
  let hanging: { answer: (st: RootStat) => void } | undefined;
  let hangs = false;
  let looks = 0;
  const realStat = (root: string): RootStat => statSync(root, { bigint: true });
  // Answers in promise callbacks (no thread pool): a test settles it with one turn of the event loop.
  const lookRoot: RootLook = {
    stat: (root) => {
      onLook?.(root);
      if (root !== hungRoot || !hangs) return Promise.resolve().then(() => realStat(root));
      looks += 1;
      return new Promise((resolve) => (hanging = { answer: resolve }));
    },
    realpath: async (root) => realpathSync(root),
    isEmpty: async (root) => readdirSync(root).length === 0,
    exists: async (path) => existsSync(path),
  };
  const armed: { expired: () => void; disarmed: boolean }[] = [];
  const rootCheckDeadline: RootDeadline = (expired) => {
    const deadline = { expired, disarmed: false };
    armed.push(deadline);
    return () => {
      deadline.disarmed = true;
    };
  };
  const harness = agentHarness(OTHER, {}, { journal: { lookRoot } });
  h = harness;
  writeFileSync(join(harness.src.path, "o.txt"), "other");
  const sets = [
    { name: HUNG, root: hungRoot, exclude: [] },
    { name: OTHER, root: harness.src.path, exclude: [] },
  ];
  harness.restart({ sets, rootCheckDeadline, ...options });
  await harness.agent.start();
  await harness.agent.drain(HUNG);
  await harness.agent.drain(OTHER);
  return {
    harness,
    hungRoot,
    otherRoot: harness.src.path,
    looks: () => looks,
    hang: () => {
      hangs = true;
      looks = 0;
    },
    answer: () => {
      hangs = false;
      hanging?.answer(realStat(hungRoot));
      hanging = undefined;
    },
    expire: () => {
      for (const deadline of armed.splice(0)) if (!deadline.disarmed) deadline.expired();
    },
  };
}

it("a root whose look does not answer in time holds its set root-unresponsive: nothing of it is journaled, the other set replicates, status and doctor name it, and it resumes once the root answers", async () => {
  const r = await rig();
  const { harness } = r;
  const before = await pictureOfTarget(harness.store, HUNG);
  expect(Object.keys(before)).toEqual(["a.txt", "b.txt"]);

  r.hang();
  const checking = harness.agent.checkRoot(HUNG);
  r.expire();
  const hold = await checking;
  expect(hold?.state).toBe("root-unresponsive");
  expect(harness.journal.roots.held(HUNG)).toMatchObject({ state: "root-unresponsive", root: r.hungRoot, expected: "an answer within 10 s" });

  // Asked again while the look is outstanding: the hold at once, and no second look (a hung one holds its thread).
  expect((await harness.agent.checkRoot(HUNG))?.state).toBe("root-unresponsive");
  // A file deleted meanwhile (or the mount's files read as gone): neither the watcher's events nor a scan journal it.
  rmSync(join(r.hungRoot, "a.txt"));
  harness.agent.hint(HUNG, "a.txt");
  expect(await harness.agent.processHints(HUNG)).toBe(0);
  expect((await harness.agent.scan(HUNG)).changes).toBe(0);
  await expect(harness.agent.insertMarker(HUNG, { fields: { action: "snapshot", timeoutSeconds: 0 } })).rejects.toThrow(/held \(root-unresponsive\).*no marker is journaled/);
  expect(r.looks()).toBe(1);
  await harness.agent.drain(HUNG);
  expect(await pictureOfTarget(harness.store, HUNG)).toEqual(before);

  // The other set goes on.
  writeFileSync(join(r.otherRoot, "p.txt"), "more");
  await harness.agent.scan(OTHER);
  await harness.agent.drain(OTHER);
  expect(await pictureOfTarget(harness.store, OTHER)).toEqual(await pictureOfSource(r.otherRoot));

  // Status (and its --json's problems) and doctor name the hold and what to do.
  const status = await readSetStatus(harness.store, HUNG);
  if (!status) throw new Error("the target holds no status of the set");
  const rootHold = harness.journal.roots.held(HUNG);
  const problems = findProblems({ set: HUNG, counters: harness.journal.sets.counters(HUNG), generation: harness.journal.sets.generation(HUNG), rootHold, target: { status }, now: new Date() });
  expect(problems.map((problem) => problem.kind)).toEqual(["root-unresponsive"]);
  expect(problems[0]?.message).toMatch(new RegExp(`held since .*: the root ${r.hungRoot} has not answered .*hung network file system.*resumes by itself once the root answers`));
  expect(rootHolds(harness.state.path)).toEqual([expect.objectContaining({ set: HUNG, state: "root-unresponsive" })]);

  // The root answers: the late look ends the hold, and the set resumes with a scan that journals the real delete.
  r.answer();
  await settled();
  expect(harness.journal.roots.held(HUNG)).toBeUndefined();
  expect(await harness.agent.checkRoot(HUNG)).toBeUndefined();
  await harness.agent.scan(HUNG);
  await harness.agent.drain(HUNG);
  expect(await pictureOfTarget(harness.store, HUNG)).toEqual(await pictureOfSource(r.hungRoot));
  expect(Object.keys(await pictureOfTarget(harness.store, HUNG))).toEqual(["b.txt"]);
});

it("the agent stops while a look at a root has not answered, with a scan waiting on it", async () => {
  const r = await rig();
  const { harness } = r;
  r.hang();
  const checking = harness.agent.checkRoot(HUNG);
  // The scan waits for the look (its time limit not passed yet).
  const scanning = harness.agent.scan(HUNG);
  await harness.agent.stop();
  // What waited hears the set held, so nothing goes on to read the root; the journal records no hold it did not earn.
  expect((await scanning).changes).toBe(0);
  expect((await checking)?.state).toBe("root-unresponsive");
  expect(harness.journal.roots.held(HUNG)).toBeUndefined();
  expect(r.looks()).toBe(1);
});

it("the root timer starts no second look at a root whose look has not answered, while it goes on looking at the other roots", async () => {
  // Resolved once the timer looked at the other root 20 times after the hung root's look began.
  let otherLooks: { count: number; done: () => void } | undefined;
  const watch: NonNullable<AgentOptions["watch"]> = () => ({ close: async () => undefined });
  const r = await rig({ monitorEnabled: true, rescanMs: HOUR_MS, watch, rootCheckMs: 1 }, (root) => {
    if (root.endsWith("/nfs") || !otherLooks) return;
    otherLooks.count += 1;
    if (otherLooks.count === 20) otherLooks.done();
  });
  r.hang();
  await new Promise<void>((done) => (otherLooks = { count: 0, done }));
  expect(r.looks()).toBe(1);
  // Not held before its time limit passed; held once it did, the look still outstanding.
  expect(r.harness.journal.roots.held(HUNG)).toBeUndefined();
  r.expire();
  await settled();
  expect(r.harness.journal.roots.held(HUNG)?.state).toBe("root-unresponsive");
  expect(r.looks()).toBe(1);
});

it("the journal's guard looks at no root: a delete is journaled or refused by the hold recorded, without a stat", async () => {
  base = tempDir("tidemark-root-guard-");
  const root = join(base.path, "root");
  mkdirSync(root);
  writeFileSync(join(root, "a.txt"), "alpha");
  let stats = 0;
  const statRoot = (path: string) => {
    stats += 1;
    return statSync(path, { bigint: true });
  };
  const harness = agentHarness(HUNG, { sets: [{ name: HUNG, root, exclude: [] }] }, { journal: { statRoot } });
  h = harness;
  await harness.agent.start();
  stats = 0;
  harness.journal.append(HUNG, [{ op: "delete", path: "a.txt" }]);
  expect(stats).toBe(0);
  harness.journal.atomically(() => harness.journal.roots.hold(HUNG, root, { ok: false, state: "root-unresponsive", expected: "an answer within 10 s", found: "none" }));
  expect(() => harness.journal.append(HUNG, [{ op: "delete", path: "b.txt" }])).toThrow(/held \(root-unresponsive\)/);
  expect(stats).toBe(0);
});
