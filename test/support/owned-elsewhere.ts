// A set another host owns on the target: its agent ran the set (so the target
// holds its owner record and key) and stopped. This host's folder of the same
// set is made and left empty; what its agent journals there cannot be sent
// (the sends are held until `tidemark adopt`).

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { readOwnerKey } from "../../agent/owner-key.ts";
import { startAgent } from "../../agent/runtime.ts";
import type { SigningKey } from "../../contract/signing.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { eventually, type TestCloud } from "./local-cloud.ts";

export interface OwnedElsewhere {
  /** This host's folder: its config goes here, the set's tree in `site`. */
  readonly otherDir: string;
  /** The owner's key (the one the target accepts). */
  readonly ownerKey: SigningKey;
}

export async function ownedElsewhere(cloud: TestCloud, work: string, set: string): Promise<OwnedElsewhere> {
  const ownerDir = join(work, "owner");
  const otherDir = join(work, "other");
  mkdirSync(join(ownerDir, "site"), { recursive: true });
  mkdirSync(join(otherDir, "site"), { recursive: true });
  writeFileSync(join(ownerDir, "site", "index.html"), "<h1>genuine</h1>");
  const owner = await startAgent(loadConfig(cloud.writeConfig(ownerDir, [{ name: set, path: "site" }])), silentLogger);
  await eventually(async () => expect((await readSetStatus(cloud.store, set)).lastSeq).toBeGreaterThan(0));
  await owner.stop();
  const ownerKey = readOwnerKey(join(ownerDir, "state"));
  if (!ownerKey) throw new Error("the owner's agent made no key");
  return { otherDir, ownerKey };
}
