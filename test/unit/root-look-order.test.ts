// A look at a set's root already under way when a batch is about to be
// journaled may have read the root before the batch read the tree: an unmount
// between the two would then pass it, and the batch's deletes (every file
// found gone) would be journaled. So the check right before a batch waits for
// such a look and looks again. The stand-in look here reads the root at once
// but answers when the test says so (a child process slow to reply).

import { existsSync, mkdirSync, readdirSync, realpathSync, renameSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it, vi } from "vitest";
import { RootWatch } from "../../agent/root-watch.ts";
import type { RootLook } from "../../agent/set-roots.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "data";
let h: Harness | undefined;
let base: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  vi.restoreAllMocks();
  await h?.close();
  base?.remove();
  h = undefined;
  base = undefined;
});

it("a look begun before a batch read the tree does not pass the batch: an unmount in between journals no delete", async () => {
  base = tempDir("tidemark-root-look-order-");
  const root = join(base.path, "disk");
  mkdirSync(root);
  writeFileSync(join(root, "a.txt"), "alpha");
  writeFileSync(join(root, "b.txt"), "bravo");
  // Armed, the next look's last read is made at once (the root still good) and answered when the test releases it.
  let slow: { read: () => void; answer?: () => void } | undefined;
  const lookRoot: RootLook = {
    stat: async (path) => statSync(path, { bigint: true }),
    realpath: async (path) => realpathSync(path),
    isEmpty: (path) => {
      const empty = readdirSync(path).length === 0;
      const armed = slow;
      if (!armed) return Promise.resolve(empty);
      slow = undefined;
      return new Promise((resolve) => {
        armed.answer = () => resolve(empty);
        armed.read();
      });
    },
    exists: async (path) => existsSync(path),
  };
  const harness = agentHarness(SET, { sets: [{ name: SET, root, exclude: [] }] }, { journal: { lookRoot } });
  h = harness;
  await harness.agent.start();
  await harness.agent.drain(SET);
  const before = await pictureOfTarget(harness.store, SET);
  expect(Object.keys(before)).toEqual(["a.txt", "b.txt"]);

  // The root timer's look reads the root while it is good ...
  const armed: { read: () => void; answer?: () => void } = { read: () => undefined };
  const read = new Promise<void>((resolve) => (armed.read = resolve));
  slow = armed;
  const timerLook = harness.agent.checkRoot(SET);
  await read;
  // ... the disk is unmounted (its empty mount point left), and the watcher's events are captured before that look
  // answers: the batch's check comes while it is under way.
  renameSync(root, join(base.path, "away"));
  mkdirSync(root);
  const original = RootWatch.prototype.check;
  let batchChecks: () => void = () => undefined;
  const batchChecked = new Promise<void>((resolve) => (batchChecks = resolve));
  vi.spyOn(RootWatch.prototype, "check").mockImplementation(function (this: RootWatch, ...args: Parameters<RootWatch["check"]>) {
    batchChecks();
    return original.apply(this, args);
  });
  const journaled: string[] = [];
  const append = harness.journal.append.bind(harness.journal);
  harness.journal.append = (set, changes) => {
    journaled.push(...changes.map((change) => change.op));
    return append(set, changes);
  };
  harness.agent.hint(SET, "a.txt");
  harness.agent.hint(SET, "b.txt");
  const capturing = harness.agent.processHints(SET).catch(() => 0);
  await batchChecked;
  armed.answer?.();
  expect(await timerLook).toBeUndefined();
  await capturing;

  expect(journaled).not.toContain("delete");
  expect(harness.journal.roots.held(SET)?.state).toBe("root-changed");
  await harness.agent.drain(SET);
  expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
});

it("a capture that read the tree while the agent stops is journaled only behind a look at the root: an unmount then journals no delete", async () => {
  base = tempDir("tidemark-root-look-stop-");
  const root = join(base.path, "disk");
  mkdirSync(root);
  writeFileSync(join(root, "a.txt"), "alpha");
  writeFileSync(join(root, "b.txt"), "bravo");
  const harness = agentHarness(SET, { sets: [{ name: SET, root, exclude: [] }] });
  h = harness;
  await harness.agent.start();
  await harness.agent.drain(SET);
  const before = await pictureOfTarget(harness.store, SET);

  // The disk is unmounted (its empty mount point left) as the system shuts down, and the agent is told to stop while
  // a capture of the unmount's events has read the tree and is about to journal it.
  renameSync(root, join(base.path, "away"));
  mkdirSync(root);
  const journaled: string[] = [];
  const append = harness.journal.append.bind(harness.journal);
  harness.journal.append = (set, changes) => {
    journaled.push(...changes.map((change) => change.op));
    return append(set, changes);
  };
  const original = RootWatch.prototype.check;
  let stopping: Promise<void> | undefined;
  vi.spyOn(RootWatch.prototype, "check").mockImplementation(function (this: RootWatch, ...args: Parameters<RootWatch["check"]>) {
    stopping ??= harness.agent.stop();
    return original.apply(this, args);
  });
  harness.agent.hint(SET, "a.txt");
  harness.agent.hint(SET, "b.txt");
  await harness.agent.processHints(SET).catch(() => 0);
  await stopping;

  expect(journaled).not.toContain("delete");
  expect(harness.journal.roots.held(SET)?.state).toBe("root-changed");
  expect(await pictureOfTarget(harness.store, SET)).toEqual(before);
});
