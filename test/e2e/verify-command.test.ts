// `tidemark verify` and `tidemark mirror` as an operator runs them: through
// the running agent's control socket, and on their own when no agent runs.

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { encodeMeta } from "../../contract/layout.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let agent: RunningAgent | undefined;
const work = tempDir();
const src = join(work.path, "src");
let config: string;

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(join(src, "sub"), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(src, "sub", `f${i}.txt`), `file ${i}\n`);
  config = cloud.writeConfig(work.path, [{ name: "web", path: "src" }]);
  agent = await startAgent(loadConfig(config), silentLogger);
  await eventually(async () => expect(await pictureOfTarget(cloud.store, "web")).toEqual(await pictureOfSource(src)));
});

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

it("verifies through the running agent, finds planted differences, and mirror --mode diff repairs them", async () => {
  await cloud.store.delete("data/web/sub/f3.txt");
  await cloud.store.put("data/web/orphan.txt", Buffer.from("x"), encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64) }));

  const verify = await tidemark(["verify", "web", "--json", "--config", config]);
  expect(verify.stderr).toBe("");
  expect(verify.code).toBe(3);
  const result = JSON.parse(verify.stdout) as { report: { missing: string[]; extra: string[]; checked: number } };
  expect(result.report).toMatchObject({ missing: ["sub/f3.txt"], extra: ["orphan.txt"] });
  expect(result.report.checked).toBe(21);

  const human = await tidemark(["verify", "web", "--config", config]);
  expect(human.stdout).toMatch(/^set web: 21 entries compared at seq \d+: 1 missing, 0 different, 1 extra \(orphans reported\)\n {2}missing {3}sub\/f3\.txt\n/);

  const mirror = await tidemark(["mirror", "web", "--mode", "diff", "--config", config]);
  expect(mirror.code).toBe(0);
  expect(mirror.stdout).toContain("1 changes journaled to repair the target");
  await eventually(async () => expect((await cloud.store.get("data/web/sub/f3.txt"))?.body.toString()).toBe("file 3\n"));

  // Content changed behind the applier's back, same size and metadata: only --deep sees it, --repair fixes it.
  const f7 = await cloud.store.get("data/web/sub/f7.txt");
  await cloud.store.put("data/web/sub/f7.txt", Buffer.from("FILE 7\n"), f7?.meta ?? {});
  const repair = await tidemark(["verify", "web", "--deep", "--repair", "--config", config]);
  expect(repair.code).toBe(0);
  expect(repair.stdout).toMatch(/0 missing, 1 different, 1 extra/);
  expect(repair.stdout).toContain("different sub/f7.txt (content)");
  expect(repair.stdout).toContain("1 changes journaled to repair the target");
  await eventually(async () => expect((await cloud.store.get("data/web/sub/f7.txt"))?.body.toString()).toBe("file 7\n"));
});

it("works without a running agent, and refuses an unknown set or mode", async () => {
  await agent?.stop();
  agent = undefined;
  writeFileSync(join(src, "sub", "new.txt"), "written while no agent ran");
  const verify = await tidemark(["verify", "web", "--json", "--config", config]);
  // The orphan is still there: the config's policy only reports orphans.
  expect(verify.code).toBe(3);
  expect((JSON.parse(verify.stdout) as { report: { missing: string[]; extra: string[] } }).report).toMatchObject({ missing: [], extra: ["orphan.txt"] });
  expect((await cloud.store.get("data/web/sub/new.txt"))?.body.toString()).toBe("written while no agent ran");

  const unknown = await tidemark(["verify", "nope", "--config", config]);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr).toMatch(/^tidemark: no set named "nope" in .* \(sets: web\)\n$/);
  const badMode = await tidemark(["mirror", "web", "--mode", "fast", "--config", config]);
  expect(badMode.code).toBe(2);
  expect(badMode.stderr).toBe('tidemark: --mode must be one of full, diff, checksum, got "fast"\n');
});

it("runs the configured mirror on start: a diff that repairs and removes orphans", async () => {
  await agent?.stop();
  await cloud.store.delete("data/web/sub/f5.txt");
  await cloud.store.put("data/web/stray.txt", Buffer.from("x"), encodeMeta({ kind: "file", mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64) }));
  const withMirror = join(work.path, "mirror-on-start.json");
  writeFileSync(withMirror, JSON.stringify({ ...JSON.parse(readFileSync(config, "utf8")), orphans: "delete", mirror: { onStart: "diff" } }));
  agent = await startAgent(loadConfig(withMirror), silentLogger);
  await eventually(async () => {
    expect((await cloud.store.get("data/web/sub/f5.txt"))?.body.toString()).toBe("file 5\n");
    expect(await cloud.store.head("data/web/stray.txt")).toBeUndefined();
    expect(await cloud.store.head("data/web/orphan.txt")).toBeUndefined();
  });
});

it("names what it did not compare (entries the set does not replicate) and exits 3 while any is there", async () => {
  await eventually(async () => expect(await pictureOfTarget(cloud.store, "web")).toEqual(await pictureOfSource(src)));
  execFileSync("mkfifo", [join(src, "pipe")]);
  writeFileSync(join(src, "bad\nname.txt"), "a newline in its name");

  const verify = await tidemark(["verify", "web", "--json", "--config", config]);
  expect(verify.stderr).toBe("");
  expect(verify.code).toBe(3);
  const result = JSON.parse(verify.stdout) as { report: { missing: string[]; different: unknown[]; extra: string[] }; skipped: { path: string; reason: string }[] };
  expect(result.report).toMatchObject({ missing: [], different: [], extra: [] });
  expect(result.skipped.map(({ path, reason }) => [path, reason])).toEqual([
    ["bad\nname.txt", "path contains a control character"],
    ["pipe", "a FIFO: no content to replicate"],
  ]);

  const human = await tidemark(["verify", "web", "--config", config]);
  expect(human.code).toBe(3);
  expect(human.stdout).toMatch(/0 missing, 0 different, 0 extra\n2 entries not compared \(not replicated; `tidemark status web` names them all\):\n {2}skipped {3}bad\\nname\.txt \(path contains a control character\)\n {2}skipped {3}pipe \(a FIFO: no content to replicate\)\n$/);

  rmSync(join(src, "pipe"));
  rmSync(join(src, "bad\nname.txt"));
  const clean = await tidemark(["verify", "web", "--json", "--config", config]);
  expect(clean.code).toBe(0);
  expect((JSON.parse(clean.stdout) as { skipped: unknown[] }).skipped).toEqual([]);
});
