// `tidemark status` on a set whose target found two writers on its journal (a
// copy of the host, its key included, sending too): NOT IN SYNC, the
// two-writers line saying which seq differs and what to do, and the target's
// record of it in --json.

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { silentLogger } from "../../agent/log.ts";
import { loadOrCreateOwnerKey } from "../../agent/owner-key.ts";
import { Applier } from "../../lambdas/applier/applier.ts";
import { writeOwner } from "../../lambdas/target/owner.ts";
import { tidemark } from "../support/cli.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { messageBody, ownerRecordFor, putRecord, signedIncoming } from "../support/messages.ts";
import { tempDir } from "../support/tree.ts";

const SET = "www";
let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir("tidemark-two-writers-");
});
afterAll(async () => {
  await cloud?.stop();
  work?.remove();
});

it("names two writers on one journal in status and --json, not in sync", async () => {
  mkdirSync(join(work.path, "site"), { recursive: true });
  const config = cloud.writeConfig(work.path, [{ name: SET, path: "site" }]);
  const key = loadOrCreateOwnerKey(join(work.path, "state"), { log: silentLogger }).key;
  await writeOwner(cloud.store, ownerRecordFor(SET, key));
  const applier = new Applier({ store: cloud.store, log: () => {} });
  await applier.applyMessage(signedIncoming("real-1", SET, messageBody(SET, [putRecord(1, "index.html", "the real host's")]), key));
  expect(await applier.applyMessage(signedIncoming("copy-1", SET, messageBody(SET, [putRecord(1, "index.html", "the copy's")]), key))).toEqual({ kind: "held", set: SET });

  const json = await tidemark(["status", "--json", "--config", config]);
  expect(json.code).toBe(1);
  const [report] = (JSON.parse(json.stdout) as { sets: { inSync: boolean; problems: { kind: string; message: string }[]; target: Record<string, unknown> }[] }).sets;
  expect(report?.inSync).toBe(false);
  expect(report?.target).toMatchObject({ state: "out-of-sync", twoWriters: { seq: 1, messageId: "copy-1", applied: expect.stringMatching(/^put index\.html \(15 bytes/) as string } });
  const problem = report?.problems.find((p) => p.kind === "two-writers");
  expect(problem?.message).toMatch(/^two writers on one journal: seq 1 of message copy-1 .* differs from what the target applied/);
  expect(problem?.message).toContain(`\`tidemark adopt ${SET}\` on the host that should own the set`);
  // Named once: not again as a bare out-of-sync target.
  expect(report?.problems.map((p) => p.kind)).not.toContain("target-out-of-sync");

  const text = await tidemark(["status", "--config", config]);
  expect(text.code).toBe(1);
  expect(text.stdout).toContain("two-writers");
  expect(text.stdout).toContain("two writers on one journal: seq 1 of message copy-1");
});
