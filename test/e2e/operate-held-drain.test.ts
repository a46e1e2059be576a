// `verify`/`mirror` with no agent running, on a set whose hold is first noticed at the command's final send (what
// the operation journaled cannot leave): the command fails with the hold (HeldWaitError, its JSON under --json,
// exit 1) instead of printing success while its repairs stay unsent.

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { heldAsJson, operate } from "../../agent/commands/operate.ts";
import { loadConfig } from "../../agent/config.ts";
import { HeldWaitError } from "../../agent/held-wait.ts";
import { silentLogger } from "../../agent/log.ts";
import { readOwnerKey } from "../../agent/owner-key.ts";
import { startAgent } from "../../agent/runtime.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
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

it("fails with the hold when what the operation journaled cannot be sent, and only says it for a queued marker", async () => {
  const ownerDir = join(work.path, "owner");
  const otherDir = join(work.path, "other");
  mkdirSync(join(ownerDir, "site"), { recursive: true });
  mkdirSync(join(otherDir, "site"), { recursive: true });
  writeFileSync(join(ownerDir, "site", "index.html"), "<h1>genuine</h1>");
  const owner = await startAgent(loadConfig(cloud.writeConfig(ownerDir, [{ name: SET, path: "site" }])), silentLogger);
  await eventually(async () => expect((await readSetStatus(cloud.store, SET)).lastSeq).toBeGreaterThan(0));
  await owner.stop();
  const ownerKey = readOwnerKey(join(ownerDir, "state"));
  if (!ownerKey) throw new Error("the owner's agent made no key");

  const config = loadConfig(cloud.writeConfig(otherDir, [{ name: SET, path: "site" }]));
  // The operation journals a change (as a repair does) and returns its report without waiting on the target.
  const journalsOne = (name: string) => async (deps: { agent: { scan(set: string): Promise<unknown> } }) => {
    writeFileSync(join(otherDir, "site", name), name);
    await deps.agent.scan(SET);
    return { done: true };
  };
  const stderr = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
  const stdout = vi.spyOn(process.stdout, "write").mockImplementation(() => true);
  try {
    const failed = await operate(config, "/verify", { set: SET }, journalsOne("repair.html"), { quiet: true, unsentWhenHeld: "the changes this verify journaled" }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failed).toBeInstanceOf(HeldWaitError);
    expect(heldAsJson(failed, true)).toBe(1);
    const printed = JSON.parse(String(stdout.mock.calls.at(-1)?.[0])) as Record<string, unknown>;
    expect(printed).toMatchObject({ error: "sends-held", set: SET, ownerKeyId: ownerKey.keyId, remedy: `tidemark adopt ${SET}` });
    expect(String(printed.message)).toContain("the changes this verify journaled");
    // A queued marker's command: the hold is said on stderr, its outcome printed as usual.
    await expect(operate(config, "/task", { set: SET }, journalsOne("marker.html"), { quiet: true })).resolves.toEqual({ done: true });
    expect(stderr.mock.calls.map((call) => String(call[0])).join("")).toContain("not sent");
  } finally {
    stderr.mockRestore();
    stdout.mockRestore();
  }
}, 120_000);
