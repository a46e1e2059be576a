// The root check's timer runs from the start of `tidemark run`, while the
// start still scans the sets one after another. A set held before the restart
// whose root was back could be resumed by the timer (a watcher opened) and
// then watched again when the start reached it: two watchers on one tree for
// as long as the agent ran, every change hinted twice. One set, one watcher.

import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import type { AgentOptions } from "../../agent/agent.ts";
import { agentHarness, type Harness } from "../support/harness.ts";
import { tempDir } from "../support/tree.ts";

const HOUR_MS = 3_600_000;
let h: Harness | undefined;
let other: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  await h?.close();
  other?.remove();
  h = undefined;
  other = undefined;
});

it("a set resumed by the root timer while the start scans another set keeps one watcher", async () => {
  other = tempDir("tidemark-second-");
  const second = join(other.path, "root");
  mkdirSync(second);
  writeFileSync(join(second, "b.txt"), "bravo");
  const open = new Map<string, number>();
  const watch: NonNullable<AgentOptions["watch"]> = (spec) => {
    open.set(spec.name, (open.get(spec.name) ?? 0) + 1);
    let closed = false;
    return {
      close: async () => {
        if (!closed) open.set(spec.name, (open.get(spec.name) ?? 0) - 1);
        closed = true;
      },
    };
  };
  h = agentHarness("first");
  const harness = h;
  // The first set takes a while to scan: the timer fires meanwhile.
  for (let i = 0; i < 400; i++) writeFileSync(join(harness.src.path, `f${i}.txt`), `file ${i}`);
  const sets = [
    { name: "first", root: harness.src.path, exclude: [] },
    { name: "second", root: second, exclude: [] },
  ];
  harness.restart({ sets, monitorEnabled: true, rescanMs: HOUR_MS, watch, rootCheckMs: 1 });
  await harness.agent.start();
  await harness.agent.drain("second");
  // The second set's root goes away: held, recorded in the journal.
  renameSync(second, `${second}.away`);
  expect((await harness.agent.checkRoot("second"))?.state).toBe("root-missing");
  await harness.agent.stop();
  renameSync(`${second}.away`, second);
  open.clear();

  harness.restart({ sets, monitorEnabled: true, rescanMs: HOUR_MS, watch, rootCheckMs: 1 });
  await harness.agent.start();
  expect(harness.journal.roots.held("second")).toBeUndefined();
  expect(open.get("first")).toBe(1);
  expect(open.get("second")).toBe(1);
});
