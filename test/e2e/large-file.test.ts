// A file of more than 1 GiB on the local cloud as `tidemark local` runs it
// (the emulator persisted to a folder). Its staging upload used to fail at
// CompleteMultipartUpload (SQLite's 1,000,000,000-byte BLOB limit), the agent
// retried it forever and every later change of the set waited behind it.
// Now it arrives byte for byte, and small files written beside it too.
// Cost: the file is sparse (3 MiB of random data); the emulator keeps the
// object in a file and copies and serves it from there (emulator-file-bodies.ts),
// so the test process does not hold it in memory.

import { createHash, randomBytes } from "node:crypto";
import { closeSync, createReadStream, ftruncateSync, mkdirSync, openSync, readdirSync, writeFileSync, writeSync } from "node:fs";
import { Readable } from "node:stream";
import { join } from "node:path";
import { GetObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { dataKey, META } from "../../contract/layout.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const SET = "big";
const SIZE = 1024 ** 3 + 1024 * 1024 + 7;
const MiB = 1024 * 1024;

let cloud: TestCloud;
let agent: RunningAgent | undefined;
const work = tempDir();
const src = join(work.path, "src");
const emulatorDir = join(work.path, "emulator");

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) if (Buffer.isBuffer(chunk)) hash.update(chunk);
  return hash.digest("hex");
}

/** A sparse file of SIZE bytes with a MiB of random bytes at its start, middle and end. */
function writeSparse(path: string): void {
  const fd = openSync(path, "w");
  try {
    ftruncateSync(fd, SIZE);
    for (const offset of [0, Math.floor(SIZE / 2), SIZE - MiB]) writeSync(fd, randomBytes(MiB), 0, MiB, offset);
  } finally {
    closeSync(fd);
  }
}

beforeAll(async () => {
  cloud = await startTestCloud({ dataDir: emulatorDir });
  mkdirSync(src);
  writeFileSync(join(src, "before.txt"), "written before the large file\n");
  agent = await startAgent(loadConfig(cloud.writeConfig(work.path, [{ name: SET, path: "src" }])), silentLogger);
});

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

const arrived = async (path: string, text: string) => {
  expect((await cloud.store.get(dataKey(SET, path)))?.body.toString("utf8")).toBe(text);
};

it("replicates a sparse file over 1 GiB byte for byte, and the small files beside it keep arriving", async () => {
  await eventually(() => arrived("before.txt", "written before the large file\n"), 60_000);
  writeSparse(join(src, "disk.img"));
  writeFileSync(join(src, "beside.txt"), "written right after it\n");
  const expected = await sha256OfFile(join(src, "disk.img"));

  await eventually(async () => expect((await cloud.store.head(dataKey(SET, "disk.img")))?.meta[META.sha256]).toBe(expected), 600_000, 1_000);
  await eventually(() => arrived("beside.txt", "written right after it\n"), 60_000);
  // The bytes themselves, streamed: the metadata alone would not prove them.
  const object = await cloud.store.client.send(new GetObjectCommand({ Bucket: cloud.bucket, Key: dataKey(SET, "disk.img") }));
  expect(object.ContentLength).toBe(SIZE);
  if (!(object.Body instanceof Readable)) throw new Error("expected the object's body as a Node stream");
  const hash = createHash("sha256");
  for await (const chunk of object.Body) if (Buffer.isBuffer(chunk)) hash.update(chunk);
  expect(hash.digest("hex")).toBe(expected);
  // Kept beside the emulator's database, not in it.
  expect(readdirSync(join(emulatorDir, "large-objects", cloud.bucket)).length).toBeGreaterThan(0);

  writeFileSync(join(src, "after.txt"), "and the set still flows\n");
  await eventually(() => arrived("after.txt", "and the set still flows\n"), 60_000);
}, 900_000);
