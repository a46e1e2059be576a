// The agent killed with SIGKILL in the middle of a burst, then restarted:
// every change arrives and no record is applied twice.

import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import { spawnTidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;
let child: ChildProcess | undefined;

function startAgentProcess(config: string): Promise<ChildProcess> {
  const proc = spawnTidemark(["run", "--config", config]);
  return new Promise((resolve, reject) => {
    let err = "";
    proc.stderr?.on("data", (chunk: Buffer) => {
      err += chunk.toString();
      if (err.includes("replicating")) resolve(proc);
    });
    proc.on("exit", (code) => reject(new Error(`agent exited with ${code} before replicating: ${err}`)));
  });
}

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});

afterAll(async () => {
  child?.kill("SIGKILL");
  await cloud?.stop();
  work?.remove();
});

it("loses nothing and applies nothing twice across a SIGKILL", async () => {
  const src = join(work.path, "src");
  mkdirSync(join(src, "burst"), { recursive: true });
  for (let i = 0; i < 100; i++) writeFileSync(join(src, `seed-${i}`), `seed ${i}`);
  const config = cloud.writeConfig(work.path, [{ name: "crash", path: "src" }]);
  child = await startAgentProcess(config);

  for (let k = 0; k < 3000; k++) {
    writeFileSync(join(src, "burst", `f${k % 150}`), `version ${k}\n`.repeat((k % 7) + 1));
    if (k % 500 === 250) rmSync(join(src, `seed-${k % 100}`), { force: true });
    if (k % 50 === 0) await sleep(5);
    if (k === 1200) {
      child.kill("SIGKILL");
      await new Promise((resolve) => child?.once("exit", resolve));
    }
    if (k === 2000) child = await startAgentProcess(config);
  }

  await eventually(async () => {
    expect(await pictureOfTarget(cloud.store, "crash", { dirMtimes: true })).toEqual(await pictureOfSource(src, { dirMtimes: true }));
  }, 90_000);
  const seqs = cloud.applied.get("crash") ?? [];
  expect(new Set(seqs).size).toBe(seqs.length);
  expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));
}, 180_000);
