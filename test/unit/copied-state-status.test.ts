// `tidemark status` and `doctor` on a host whose state folder is a copy: doctor
// says so before the key is replaced; once it is, both name why this host's
// key is new (since when, from which place) while the target's owner record
// names the original host's key, and stop once this host owns the set.

import { cpSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { collectStatus } from "../../agent/commands/status.ts";
import { runDoctor } from "../../agent/doctor.ts";
import { silentLogger } from "../../agent/log.ts";
import { loadOrCreateOwnerKey, readOwnerKey } from "../../agent/owner-key.ts";
import { adoptSet, writeOwner } from "../../lambdas/target/owner.ts";
import { tidemark } from "../support/cli.ts";
import { ownerRecordFor } from "../support/messages.ts";
import { startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const SET = "www";
let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir("tidemark-copied-status-");
});
afterAll(async () => {
  await cloud?.stop();
  work?.remove();
});

it("names a key made for a copied state folder in status (not-owner, --json) and doctor, until this host owns the set", async () => {
  const machine = join(work.path, "machine-id");
  writeFileSync(machine, "3d1219c7c4c5404aaa1f6d2a48adfda4\n");
  const machineIdFiles = [machine];
  const originalDir = join(work.path, "original");
  const copyDir = join(work.path, "copy");
  mkdirSync(join(originalDir, "site"), { recursive: true });
  cloud.writeConfig(originalDir, [{ name: SET, path: "site" }]);
  const original = loadOrCreateOwnerKey(join(originalDir, "state"), { log: silentLogger, machineIdFiles }).key;
  await writeOwner(cloud.store, ownerRecordFor(SET, original));
  cpSync(originalDir, copyDir, { recursive: true });
  const config = cloud.writeConfig(copyDir, [{ name: SET, path: "site" }]);

  // Before any start on the copy: doctor says the key is the original's and what the next start does.
  const before = (await runDoctor(config, { machineIdFiles })).find((check) => check.name === "owner key");
  expect(before).toMatchObject({ level: "warn", detail: expect.stringContaining(`this state folder is a copy: its key ${original.keyId} was made for ${join(originalDir, "state")} on machine`) });

  const copy = loadOrCreateOwnerKey(join(copyDir, "state"), { log: silentLogger, machineIdFiles });
  const [report] = await collectStatus(config);
  expect(report?.hostKeyCopied).toMatchObject({ keyId: original.keyId, from: { path: join(originalDir, "state") }, at: copy.copied?.at });
  const notOwner = report?.problems.find((problem) => problem.kind === "not-owner");
  expect(notOwner?.message).toContain(`this host (key ${copy.key.keyId}) does not own the set on the target: key ${original.keyId} does`);
  expect(notOwner?.message).toContain(`this host's key was made at ${copy.copied?.at} because its state folder was found to be a copy (its key ${original.keyId} was made for ${join(originalDir, "state")} on machine 3d1219c7c4c5404aaa1f6d2a48adfda4; set aside as ${copy.copied?.setAside})`);
  const held = (await runDoctor(config, { machineIdFiles })).find((check) => check.name === "owner key");
  expect(held).toMatchObject({ level: "warn", detail: expect.stringMatching(new RegExp(`^key ${copy.key.keyId} made at .* because the state folder was found to be a copy .*; the target's owner records still name another key for ${SET} \\(key ${original.keyId}\\)`)) });

  // Adopted: this host owns the set, nothing is held, and doctor's line says so.
  await adoptSet(cloud.store, SET, copy.key);
  const [adopted] = await collectStatus(config);
  expect(adopted?.hostKeyCopied).toBeNull();
  expect(adopted?.problems.map((problem) => problem.kind)).not.toContain("not-owner");
  expect((await runDoctor(config, { machineIdFiles })).find((check) => check.name === "owner key")).toMatchObject({ level: "ok", detail: expect.stringContaining("this host owns its sets on the target") });
  // The original's state folder is not a copy: doctor has nothing to say of its key.
  expect((await runDoctor(join(originalDir, "tidemark.config.json"), { machineIdFiles })).some((check) => check.name === "owner key")).toBe(false);
});

it("warns on stderr when a command's own agent (no agent running) finds the state folder copied, and sends nothing with the copied key", async () => {
  const originalDir = join(work.path, "task-original");
  const copyDir = join(work.path, "task-copy");
  const set = "docs";
  mkdirSync(join(originalDir, "site"), { recursive: true });
  cloud.writeConfig(originalDir, [{ name: set, path: "site" }]);
  // This machine's own machine id, as the CLI reads it.
  const original = loadOrCreateOwnerKey(join(originalDir, "state"), { log: silentLogger }).key;
  await writeOwner(cloud.store, ownerRecordFor(set, original));
  cpSync(originalDir, copyDir, { recursive: true });
  const config = cloud.writeConfig(copyDir, [{ name: set, path: "site" }]);
  writeFileSync(join(copyDir, "site", "copy.txt"), "from the copy");

  const task = await tidemark(["task", set, "--config", config]);
  // The marker is journaled (queued, as README says), its sends held: exit 0, the hold said on stderr.
  expect(task.code).toBe(0);
  expect(task.stdout).toMatch(/^task \S+ queued in set docs/);
  expect(task.stderr).toContain(`this state folder is a copy: its signing key was made for ${join(originalDir, "state")}`);
  expect(task.stderr).toContain("`tidemark adopt SET`");
  const copyKey = readOwnerKey(join(copyDir, "state"));
  expect(copyKey?.keyId).not.toBe(original.keyId);
  expect(task.stderr).toContain(`journaled, not sent: the target's owner record names key ${original.keyId} (since 1970-01-01T00:00:00.000Z), not this host's key ${copyKey?.keyId}`);
  expect(await cloud.store.head(`data/${set}/copy.txt`)).toBeUndefined();
});
