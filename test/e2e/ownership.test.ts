// Two real agents with the same credentials claim one set on the local
// cloud: the owner's stream goes on, the rogue's agent holds its sends (the
// owner record names another key), messages sent anyway are refused and
// named by `tidemark status`, a planted staged object is not written, and
// `tidemark adopt` moves the set for good.

import { createHash } from "node:crypto";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { ChildProcess } from "node:child_process";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { SendMessageCommand } from "@aws-sdk/client-sqs";
import { afterAll, beforeAll, expect, it } from "vitest";
import { readOwnerKey } from "../../agent/owner-key.ts";
import { stagingKey } from "../../contract/layout.ts";
import { SIGNATURE_ATTRIBUTE, signMessage, type SigningKey } from "../../contract/signing.ts";
import { makeS3Client, makeSqsClient } from "../../lambdas/aws-clients.ts";
import { readSetStatus } from "../../lambdas/store/set-status.ts";
import { spawnTidemark, tidemark } from "../support/cli.ts";
import { eventually, REGION, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { pictureOfSource, pictureOfTarget, tempDir } from "../support/tree.ts";

const SET = "www";
let cloud: TestCloud;
let work: ReturnType<typeof tempDir>;
const children: ChildProcess[] = [];
/** Each agent's log (stderr) so far. */
const logs = new Map<ChildProcess, string>();

function startAgent(config: string): Promise<ChildProcess> {
  const proc = spawnTidemark(["run", "--config", config]);
  children.push(proc);
  return new Promise((resolve, reject) => {
    let err = "";
    proc.stderr?.on("data", (chunk: Buffer) => {
      err += chunk.toString();
      logs.set(proc, err);
      if (err.includes("replicating")) resolve(proc);
    });
    proc.on("exit", (code) => reject(new Error(`agent exited with ${code} before replicating: ${err}`)));
  });
}

beforeAll(async () => {
  cloud = await startTestCloud();
  work = tempDir();
});
afterAll(async () => {
  for (const child of children) if (child.exitCode === null) child.kill("SIGKILL");
  await cloud?.stop();
  work?.remove();
});

it("refuses a second agent on the same set, ignores a planted staged object, and moves the set only by adopt", async () => {
  const ownerDir = join(work.path, "owner");
  const rogueDir = join(work.path, "rogue");
  mkdirSync(join(ownerDir, "site"), { recursive: true });
  mkdirSync(join(rogueDir, "site"), { recursive: true });
  writeFileSync(join(ownerDir, "site", "index.html"), "<h1>genuine</h1>");
  const ownerConfig = cloud.writeConfig(ownerDir, [{ name: SET, path: "site" }]);
  const ownerAgent = await startAgent(ownerConfig);
  await eventually(async () => expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(join(ownerDir, "site"))));
  const ownerKey = readOwnerKey(join(ownerDir, "state"));
  if (!ownerKey) throw new Error("the owner's agent made no key");

  // The rogue: the real CLI, its own state folder, the same set name over a folder that wants the target wiped.
  writeFileSync(join(rogueDir, "site", "index.html"), "<h1>defaced</h1>");
  const rogueConfig = cloud.writeConfig(rogueDir, [{ name: SET, path: "site" }], { mirror: { onStart: "full", afterOutOfSync: "full" } });
  const rogueAgent = await startAgent(rogueConfig);
  const rogueKey = readOwnerKey(join(rogueDir, "state"));
  if (!rogueKey) throw new Error("the rogue's agent made no key");
  // The rogue's agent knows it is not the owner: it holds its sends rather than ship what would be refused.
  await eventually(async () => expect(logs.get(rogueAgent)).toContain("sends held"));
  expect(cloud.refusals.some((line) => line.includes(rogueKey.keyId))).toBe(false);
  // A rogue that sends anyway (not through the agent) is refused.
  const before = await readSetStatus(cloud.store, SET);
  await send(rogueKey, JSON.stringify({ v: 1, set: SET, records: [{ seq: before.lastSeq + 1, op: "delete", path: "index.html" }] }), "rogue");
  await eventually(async () => expect(cloud.refusals.some((line) => line.includes(rogueKey.keyId))).toBe(true));

  // A staged object planted under the name a genuine message gives: with a SHA-256 header that lies about it the
  // local cloud refuses it, as S3 does; with its own (which the applier trusts, as checked) the message names other bytes.
  const status = await readSetStatus(cloud.store, SET);
  const wanted = Buffer.alloc(300 * 1024, 1);
  const sha = createHash("sha256").update(wanted).digest("hex");
  const planted = Buffer.alloc(wanted.length, 2);
  const s3 = makeS3Client({ region: REGION, endpoint: cloud.endpoint });
  const plant = (checksum: string) => s3.send(new PutObjectCommand({ Bucket: cloud.bucket, Key: stagingKey(SET, status.lastSeq + 1, sha), Body: planted, ChecksumSHA256: checksum }));
  await expect(plant(Buffer.from(sha, "hex").toString("base64"))).rejects.toThrow(/did not match the calculated checksum/);
  await plant(createHash("sha256").update(planted).digest("base64"));
  s3.destroy();
  const put = { seq: status.lastSeq + 1, op: "put", path: "planted.bin", size: wanted.length, mode: 0o644, mtimeNs: "1", sha256: sha, content: { kind: "staged" } };
  await send(ownerKey, JSON.stringify({ v: 1, set: SET, records: [put] }), "planted");
  await eventually(async () => expect(cloud.rejections.some((line) => line.includes("not the") && line.includes("planted.bin"))).toBe(true));
  expect(await cloud.store.head("data/www/planted.bin")).toBeUndefined();

  // The owner's stream goes on, its folder's content only.
  writeFileSync(join(ownerDir, "site", "later.html"), "<p>later</p>");
  await eventually(async () => expect(await pictureOfTarget(cloud.store, SET)).toEqual(await pictureOfSource(join(ownerDir, "site"))));
  expect(await readSetStatus(cloud.store, SET)).toMatchObject({ state: "in-sync", refused: { last: { reason: expect.stringMatching(/belongs to key/) } } });
  const shown = await tidemark(["status", "--config", ownerConfig]);
  expect(shown.stdout).toMatch(/www: refused \d+ message\(s\) not from the set's owner; last .* \(.*key [0-9a-f]{16}\)/);
  const json = JSON.parse((await tidemark(["status", "--json", "--config", ownerConfig])).stdout) as { sets: { target: { owner: { keyId: string } } }[] };
  expect(json.sets[0]?.target.owner.keyId).toBe(ownerKey.keyId);
  // The rogue's own status says it does not own the set and what moves it, not that a resync is coming.
  const problemsOf = async (config: string) =>
    (JSON.parse((await tidemark(["status", "--json", "--config", config])).stdout) as { sets: { problems: { kind: string; message: string }[] }[] }).sets[0]?.problems ?? [];
  const rogueProblems = await problemsOf(rogueConfig);
  expect(rogueProblems.map((p) => p.kind)).toContain("not-owner");
  expect(rogueProblems.map((p) => p.kind)).not.toContain("generation-change");
  expect(rogueProblems.find((p) => p.kind === "not-owner")?.message).toContain(`key ${ownerKey.keyId} does since`);
  expect((await problemsOf(ownerConfig)).map((p) => p.kind)).not.toContain("not-owner");

  // The operator moves the set to the other host, whose agent is then (re)started: its folder becomes the set,
  // the first owner is refused.
  rogueAgent.kill("SIGKILL");
  await new Promise((resolve) => rogueAgent.once("exit", resolve));
  const adopted = await tidemark(["adopt", SET, "--json", "--config", rogueConfig]);
  expect(adopted.code).toBe(0);
  expect(JSON.parse(adopted.stdout)).toMatchObject({ set: SET, owner: { keyId: rogueKey.keyId, how: "adopt" }, previous: { keyId: ownerKey.keyId } });
  await startAgent(rogueConfig);
  // Its journal's generation began with a resync the target refused: anything of that generation that reaches the
  // target before the restart's mirror (a resync again) holds the set out of sync until that resync arrives, so the
  // end state is waited for, not whichever moment on the way the content first shows in.
  await eventually(async () => {
    expect((await cloud.store.get("data/www/index.html"))?.body.toString()).toBe("<h1>defaced</h1>");
    expect(await readSetStatus(cloud.store, SET)).toMatchObject({ state: "in-sync" });
  }, 90_000);
  // The first owner's agent finds it is not the owner any more (at its periodic read of the owner record, or when
  // the target refuses what it sent meanwhile) and holds its sends from then on.
  writeFileSync(join(ownerDir, "site", "too-late.html"), "held or refused");
  await eventually(async () => expect(logs.get(ownerAgent)).toContain("sends held"), 90_000);
  expect(await cloud.store.head("data/www/too-late.html")).toBeUndefined();
  expect((await problemsOf(ownerConfig)).map((p) => p.kind)).toContain("not-owner");
}, 240_000);

async function send(key: SigningKey, body: string, id: string): Promise<void> {
  const sqs = makeSqsClient({ region: REGION, endpoint: cloud.endpoint });
  await sqs.send(
    new SendMessageCommand({
      QueueUrl: cloud.queueUrl,
      MessageGroupId: SET,
      MessageDeduplicationId: id,
      MessageBody: body,
      MessageAttributes: { [SIGNATURE_ATTRIBUTE]: { DataType: "String", StringValue: signMessage(key, SET, body) } },
    }),
  );
  sqs.destroy();
}
