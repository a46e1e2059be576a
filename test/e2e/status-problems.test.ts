// `tidemark status` names what the agent could not replicate: paths whose
// latest change the target refused (skipped), and a full disk under the
// state folder; the set is not "in sync" while either holds.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Journal } from "../../agent/journal.ts";
import { ProblemFile } from "../../agent/problem-file.ts";
import { tidemark } from "../support/cli.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});

afterAll(async () => {
  await cloud?.stop();
  work?.remove();
});

interface StatusJson {
  sets: { set: string; inSync: boolean; skipped: { path: string; reason: string }[]; journalProblem: { problem: string } | null }[];
}

it("lists skipped paths with their reason and a full disk, and the set is not in sync", async () => {
  mkdirSync(join(work.path, "src"));
  const config = cloud.writeConfig(work.path, [{ name: "docs", path: "src" }]);
  const stateDir = join(work.path, "state");
  const journal = Journal.open(stateDir);
  journal.markSkipped("docs", "big.bin", 7, "EntityTooLarge: refused");
  journal.close();
  const problems = ProblemFile.open(stateDir);
  problems.write({ problem: "disk full writing /state/journal.db (database or disk is full)", since: "2026-11-30T01:00:00.000Z" });
  problems.close();

  const json = await tidemark(["status", "--json", "--config", config]);
  const report = (JSON.parse(json.stdout) as StatusJson).sets[0];
  expect(report?.skipped).toEqual([expect.objectContaining({ path: "big.bin", reason: "EntityTooLarge: refused" })]);
  expect(report?.journalProblem?.problem).toContain("disk full writing /state/journal.db");
  expect(report?.inSync).toBe(false);

  const human = await tidemark(["status", "--config", config]);
  expect(human.stdout).toContain("docs: not replicated since");
  expect(human.stdout).toContain("big.bin: EntityTooLarge: refused");
  expect(human.stdout).toContain("disk full writing /state/journal.db");
});
