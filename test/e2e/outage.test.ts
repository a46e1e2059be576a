// The target unreachable in the middle of a write burst: the agent keeps
// journaling, retries with backoff, and when the emulator comes back (same
// port, same persisted queue and bucket) everything arrives, in order, once.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const work = tempDir();
let cloud: TestCloud | undefined;
let agent: RunningAgent | undefined;

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}

it("journals through an outage and drains in order when the target returns", async () => {
  const port = await freePort();
  const dataDir = join(work.path, "emulator");
  cloud = await startTestCloud({ port, dataDir });
  const src = join(work.path, "src");
  mkdirSync(join(src, "burst"), { recursive: true });
  writeFileSync(join(src, "before.txt"), "before the outage");
  agent = await startAgent(loadConfig(cloud.writeConfig(work.path, [{ name: "outage", path: "src" }])), silentLogger);
  const applied: number[] = [];
  const first = cloud;

  for (let k = 0; k < 300; k++) {
    writeFileSync(join(src, "burst", `f${k % 40}`), `version ${k}\n`);
    if (k === 100) {
      await first.stop();
      cloud = undefined;
      applied.push(...(first.applied.get("outage") ?? []));
    }
    if (k % 20 === 0) await sleep(10);
  }
  rmSync(join(src, "before.txt"));
  writeFileSync(join(src, "during.txt"), "written while the target was down");
  // Long enough for several failed sends and a growing backoff; on a loaded machine the second failed send, which
  // names the error, may come later still.
  await sleep(3_000);
  const running = agent;
  await eventually(async () => expect(running.agent.journal.sets.counters("outage").lastSendError).toMatch(/ECONNREFUSED|connect/));
  expect(running.agent.journal.sets.counters("outage").backlogRecords).toBeGreaterThan(0);

  const second = await startTestCloud({ port, dataDir });
  cloud = second;
  await eventually(async () => {
    expect(await pictureOfTarget(second.store, "outage")).toEqual(await pictureOfSource(src));
    expect(agent?.agent.journal.sets.counters("outage").backlogRecords).toBe(0);
  }, 90_000);
  applied.push(...(second.applied.get("outage") ?? []));
  // Nothing lost, nothing applied twice, in seq order across the outage.
  expect(applied).toEqual(Array.from({ length: applied.length }, (_, i) => i + 1));
  expect(applied.length).toBe(agent.agent.journal.sets.counters("outage").sentSeq);
}, 180_000);
