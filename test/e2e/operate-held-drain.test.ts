// `verify`/`mirror` with no agent running, on a set whose hold is first noticed at the command's final send (what
// the operation journaled cannot leave): the command fails with the hold (HeldWaitError, its JSON under --json,
// exit 1) instead of printing success while its repairs stay unsent.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { heldAsJson, operate } from "../../agent/commands/operate.ts";
import { loadConfig } from "../../agent/config.ts";
import { HeldWaitError } from "../../agent/held-wait.ts";
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

it("fails with the hold when what the operation journaled cannot be sent, and only says it for a queued marker", async () => {
  const { otherDir, ownerKey } = await ownedElsewhere(cloud, work.path, SET);

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
