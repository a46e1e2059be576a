// `verify`/`mirror` with no agent running, on a set whose hold is first noticed at the command's final send (what
// the operation journaled cannot leave): the command fails with the hold (HeldWaitError, its JSON under --json,
// exit 1) instead of printing success while its repairs stay unsent.

import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { heldAsJson, operate } from "../../agent/commands/operate.ts";
import { unsentAfterVerify } from "../../agent/commands/verify.ts";
import type { VerifyResult } from "../../agent/operations.ts";
import type { VerifyReport } from "../../contract/layout.ts";
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
    // A verify without repairs journaled nothing of its own: the message names what is unsent, and says it finished.
    const report: VerifyReport = { id: "v1", set: SET, seq: 1, deep: false, at: new Date(0).toISOString(), checked: 1, missing: [], different: [], extra: [], orphans: "report" };
    const verified = async (deps: { agent: { scan(set: string): Promise<unknown> } }): Promise<VerifyResult> => {
      writeFileSync(join(otherDir, "site", "changed.html"), "changed meanwhile");
      await deps.agent.scan(SET);
      return { report, repaired: 0 };
    };
    const held = await operate(config, "/verify", { set: SET }, verified, { quiet: true, unsentWhenHeld: unsentAfterVerify }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(held).toBeInstanceOf(HeldWaitError);
    const message = held instanceof Error ? held.message : "";
    expect(message).toMatch(/^the \d+ change\(s\) this host journaled apart from this verify \(which finished, found 0 difference\(s\) and journaled no repairs\) of set "www" will not be reached while this host's sends of the set are held/);
    expect(message).toContain("the journal keeps what is unsent and sends it once the hold ends; run `tidemark adopt www` on this host");
    expect(unsentAfterVerify({ report, repaired: 2 }, 5)).toBe("the 2 repair(s) this verify journaled");
    // A queued marker's command: the hold is said on stderr, its outcome printed as usual.
    await expect(operate(config, "/task", { set: SET }, journalsOne("marker.html"), { quiet: true })).resolves.toEqual({ done: true });
    expect(stderr.mock.calls.map((call) => String(call[0])).join("")).toContain("not sent");
  } finally {
    stderr.mockRestore();
    stdout.mockRestore();
  }
}, 120_000);
