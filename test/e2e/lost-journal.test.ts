// The whole state folder lost (journal and owner key) while the target holds
// the set: the host runs `tidemark adopt` and `tidemark run` again, through the
// local cloud. The agent sends only what the target lacks (the files changed
// meanwhile, and records without content for the rest), not the tree again;
// the target ends equal to the source, and status says in sync only then.

import { randomBytes } from "node:crypto";
import { mkdirSync, rmSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, expect, it } from "vitest";
import { spawnTidemark, tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "nm";
let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;
let child: ChildProcess | undefined;

function startAgent(config: string): Promise<ChildProcess> {
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

async function stopAgent(): Promise<void> {
  const proc = child;
  child = undefined;
  if (!proc || proc.exitCode !== null) return;
  const exited = new Promise((resolve) => proc.once("exit", resolve));
  proc.kill("SIGTERM");
  await exited;
}

interface StatusJson {
  sets: { inSync: boolean; sent: { bytes: number } }[];
}

async function status(config: string): Promise<{ code: number | null; json: StatusJson }> {
  const out = await tidemark(["status", "--json", "--config", config]);
  return { code: out.code, json: JSON.parse(out.stdout) as StatusJson };
}

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});

afterAll(async () => {
  await stopAgent();
  await cloud?.stop();
  work?.remove();
});

it("a lost state folder, adopted again: only the changed files travel, and the target ends equal to the source", async () => {
  const src = join(work.path, "src");
  let treeBytes = 0;
  const file = (p: number, f: number) => join(src, `pkg${p}`, f % 3 === 0 ? "lib/deep/er" : "dist", `m${f}.js`);
  for (let p = 0; p < 15; p++) {
    for (let f = 0; f < 20; f++) {
      mkdirSync(join(file(p, f), ".."), { recursive: true });
      const body = randomBytes(1000 + ((p * 20 + f) % 7) * 900);
      writeFileSync(file(p, f), body);
      treeBytes += body.length;
    }
  }
  writeFileSync(join(src, "big.bin"), randomBytes(5 * 1024 * 1024));
  treeBytes += 5 * 1024 * 1024;
  symlinkSync("pkg0/dist/m1.js", join(src, "main.js"));
  const config = cloud.writeConfig(work.path, [{ name: SET, path: "src" }], { orphans: "delete" });
  const matches = async () => expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(src));

  child = await startAgent(config);
  await eventually(matches);
  await eventually(async () => expect((await status(config)).json.sets[0]?.inSync).toBe(true));
  await stopAgent();

  rmSync(join(work.path, "state"), { recursive: true, force: true });
  const changed = [randomBytes(2500), randomBytes(3500), randomBytes(700)];
  writeFileSync(file(1, 1), changed[0] ?? "");
  writeFileSync(file(2, 3), changed[1] ?? "");
  writeFileSync(join(src, "pkg3", "added.js"), changed[2] ?? "");
  rmSync(file(4, 4));
  utimesSync(join(src, "big.bin"), new Date(2022, 5, 1), new Date(2022, 5, 1));
  const changedBytes = changed.reduce((sum, b) => sum + b.length, 0);

  const adopt = await tidemark(["adopt", SET, "--config", config]);
  expect(adopt.code).toBe(0);
  child = await startAgent(config);
  await eventually(matches, 90_000);
  await eventually(async () => {
    const now = await status(config);
    expect(now.code).toBe(0);
    expect(now.json.sets[0]?.inSync).toBe(true);
  }, 60_000);
  // What this agent sent (message bodies and staged objects, counted from its new journal): the changed files and
  // records without content, far below the tree.
  const sent = (await status(config)).json.sets[0]?.sent.bytes ?? Number.POSITIVE_INFINITY;
  expect(sent).toBeLessThan(treeBytes * 0.1 + changedBytes);
  await stopAgent();
  // Two mirrors and a recovery's verification through the local cloud: minutes on a loaded machine.
}, 300_000);
