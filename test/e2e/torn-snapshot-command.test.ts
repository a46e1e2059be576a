// A snapshot holding files that kept changing while its marker's barrier read
// them (the marker's list, recorded in its summary) as an operator sees it
// against the local cloud: `snapshots` marks it TORN with the count, and
// `restore` writes those files, names each as possibly torn, counts the ones
// its summary does not name, and says so in --json; every entry was restored,
// so it exits 0.

import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { DrillReportSchema } from "../../contract/drills.ts";
import { latestDrillReport } from "../../lambdas/target/index.ts";
import { tidemark } from "../support/cli.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { oneFileSnapshot } from "../support/snapshots.ts";
import { tempDir } from "../support/tree.ts";

let cloud: TestCloud;
const work = tempDir();
let config: string;

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(join(work.path, "src"));
  config = cloud.writeConfig(work.path, [{ name: "s", path: "src" }]);
  await oneFileSnapshot(cloud.store, { id: "torn", path: "busy.db", content: "pages", changingWhileRead: { paths: ["busy.db"], count: 3 } });
});

afterAll(async () => {
  await cloud?.stop();
  work.remove();
});

it("lists the snapshot as TORN with how many files kept changing", async () => {
  const list = await tidemark(["snapshots", "s", "--config", config]);
  expect(list.code, list.stderr).toBe(0);
  expect(list.stdout).toContain("1 files (TORN: 3 changing while read)");
});

it("restores the files, names each one its summary names as possibly torn and counts the rest, and exits 0", async () => {
  const to = join(work.path, "restored");
  const restore = await tidemark(["restore", "s", "--snapshot", "torn", "--to", to, "--config", config]);
  expect(restore.code, restore.stderr).toBe(0);
  expect(readFileSync(join(to, "busy.db"), "utf8")).toBe("pages");
  // Less the progress line.
  expect(restore.stderr.trim().split("\n").filter((line) => !line.startsWith("restoring "))).toEqual([
    "snapshot torn is TORN: 3 files kept changing while its barrier read them; they are restored as read",
    `possibly torn (kept changing while snapshot torn's barrier read it; restored as read): "busy.db"`,
    "possibly torn: 2 more files; the snapshot's summary names only the 1 above",
  ]);
});

it("says so in --json", async () => {
  const restore = await tidemark(["restore", "s", "--snapshot", "torn", "--to", join(work.path, "as-json"), "--json", "--config", config]);
  expect(restore.code, restore.stderr).toBe(0);
  expect(JSON.parse(restore.stdout)).toMatchObject({ possiblyTorn: { paths: ["busy.db"], count: 3 }, failures: [] });
});

it("drills it, passing as restored, with a warning naming the possibly torn files and what tests them, also in --json", async () => {
  const drill = await tidemark(["drill", "s", "--snapshot", "torn", "--config", config]);
  expect(drill.code, drill.stderr).toBe(0);
  expect(drill.stdout).toContain("drill ");
  expect(drill.stdout).toContain(": PASSED");
  expect(drill.stdout).toContain(
    `  warning: snapshot torn is TORN: 3 file(s) kept changing while its marker read them and were restored as read, possibly no state they were ever in ("busy.db" and 2 more); the comparison proves only that they are as read, give --check to test them`,
  );
  const json = await tidemark(["drill", "s", "--snapshot", "torn", "--check", "test -f busy.db", "--json", "--config", config]);
  expect(json.code, json.stderr).toBe(0);
  expect(JSON.parse(json.stdout)).toMatchObject({ passed: true, possiblyTorn: { paths: ["busy.db"], count: 3 } });
});

it("sends the count of possibly torn files in its report: `tidemark status` names it with the last drill", async () => {
  const drill = await tidemark(["drill", "s", "--snapshot", "torn", "--json", "--config", config]);
  expect(drill.code, drill.stderr).toBe(0);
  const { id } = DrillReportSchema.parse(JSON.parse(drill.stdout));
  await eventually(async () => expect(await latestDrillReport(cloud.store, "s")).toMatchObject({ id, passed: true, tornCount: 3 }));
  const status = await tidemark(["status", "--json", "--config", config]);
  expect(JSON.parse(status.stdout).sets[0].lastDrill).toMatchObject({ id, passed: true, tornCount: 3 });
  const human = await tidemark(["status", "--config", config]);
  expect(human.stdout).toContain(`(${id}, 3 file(s) possibly torn, restored as read)`);
});
