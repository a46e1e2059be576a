// `tidemark task --wait --json` with no agent running, on a set another host
// owns: the command runs the agent in-process, journals the marker, and
// cannot send it (the sends are held). It printed the plain-text error
// instead of the JSON a script reads; now it prints the JSON form (the marker
// queued, the wait cut short and why) and exits 1.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { tidemark } from "../support/cli.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { ownedElsewhere } from "../support/owned-elsewhere.ts";
import { tempDir } from "../support/tree.ts";

const SET = "www";
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

it("prints the JSON form when the set's sends are held and no agent runs", async () => {
  const { otherDir, ownerKey } = await ownedElsewhere(cloud, work.path, SET);
  writeFileSync(join(otherDir, "site", "index.html"), "<h1>other</h1>");

  const otherConfig = cloud.writeConfig(otherDir, [{ name: SET, path: "site" }]);
  const task = await tidemark(["task", SET, "--wait", "--wait-timeout", "60", "--json", "--config", otherConfig]);
  expect(task.code).toBe(1);
  const report = JSON.parse(task.stdout) as { id: string; seq: number };
  expect(report).toMatchObject({ set: SET, held: { error: "sends-held", ownerKeyId: ownerKey.keyId, remedy: `tidemark adopt ${SET}` } });
  expect(report.seq).toBeGreaterThan(0);
  expect(task.stderr).toContain(`run \`tidemark adopt ${SET}\` on this host`);
  // Without --wait: the marker is queued (journaled, held) and said so; the plain form names the hold too.
  const plain = await tidemark(["task", SET, "--config", otherConfig]);
  expect(plain.stdout).toMatch(/^task \S+ queued in set www at seq \d+/);
  expect(plain.stderr).toContain("not sent");
}, 120_000);
