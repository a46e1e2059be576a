// A file too large for one CopyObject, end to end on the local cloud, with
// the emulator's limits lowered so MiB stand for GiB (a body over 1 MiB is
// kept in a file, CopyObject takes at most 6 MiB): the agent stages the 13 MiB
// file in parts, the applier checks the staged SHA-256 by a streamed GET, is
// refused the CopyObject into data/ as S3 refuses one over 5 GiB, and copies
// it in parts (UploadPartCopy) instead. No body is read whole on the way.

import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig, type ConfigFile } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { dataKey, META } from "../../contract/layout.ts";
import { bodyFilesReadWhole } from "../../lambdas/local/emulator-large-objects.ts";
import { LOCAL_REGION, startLocalTarget, type LocalTarget } from "../../lambdas/local/target.ts";
import { eventually } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const MiB = 1024 * 1024;
const work = tempDir();
let target: LocalTarget | undefined;
let agent: RunningAgent | undefined;

beforeAll(async () => {
  target = await startLocalTarget({ emulator: { port: 0, largeBodyBytes: MiB, maxCopyObjectBytes: 6 * MiB }, visibilityTimeoutSeconds: 5, poller: { waitTimeSeconds: 1 } });
});

afterAll(async () => {
  await agent?.stop();
  await target?.stop();
  work.remove();
});

it("replicates a file over the CopyObject limit byte for byte, copied into place in parts", async () => {
  if (!target) throw new Error("no local target");
  const before = bodyFilesReadWhole();
  const src = join(work.path, "src");
  mkdirSync(src);
  const body = randomBytes(13 * MiB + 5);
  writeFileSync(join(src, "big.db"), body);
  const config: ConfigFile = { region: LOCAL_REGION, endpoint: target.endpoint, queueUrl: target.queueUrl, bucket: target.bucket, stateDir: "state", sets: [{ name: "s", path: "src" }] };
  const file = join(work.path, "tidemark.config.json");
  writeFileSync(file, JSON.stringify(config));
  agent = await startAgent(loadConfig(file), silentLogger);

  const sha256 = createHash("sha256").update(body).digest("hex");
  const store = target.store;
  await eventually(async () => expect((await store.head(dataKey("s", "big.db")))?.meta[META.sha256]).toBe(sha256), 120_000, 250);
  expect((await store.hash(dataKey("s", "big.db")))?.sha256).toBe(sha256);
  // Copied by UploadPartCopy: the ETag of an object made in parts, not the MD5 of its bytes.
  let etag: string | undefined;
  for await (const listed of store.list(dataKey("s", "big.db"))) etag = listed.etag;
  expect(etag).toMatch(/-\d+"$/);
  expect(bodyFilesReadWhole()).toBe(before);
});
