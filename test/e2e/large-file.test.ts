// A file too large for a BLOB of the emulator's database, on the local cloud
// as `tidemark local` runs it (the emulator persisted to a folder). Its
// staging upload of a file of more than 1 GiB used to fail at
// CompleteMultipartUpload (SQLite's 1,000,000,000-byte BLOB limit), the agent
// retried it forever and every later change of the set waited behind it.
// Now bodies over LARGE_BODY_BYTES (far below that limit) are kept in files
// beside the database, so a file just over LARGE_BODY_BYTES takes the path
// a 1 GiB one does (staged in parts as a large upload, joined on disk, served
// from its file) without writing a GiB: it arrives byte for byte, and small
// files written beside it too. The file is sparse (3 MiB of random data).

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
import { LARGE_BODY_BYTES } from "../../lambdas/local/emulator-large-objects.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const SET = "big";
const MiB = 1024 * 1024;
/** Just over the emulator's threshold for bodies in files (default, as `tidemark local` has it). */
const SIZE = LARGE_BODY_BYTES + MiB + 7;
/** SQLite's largest BLOB (SQLITE_MAX_LENGTH): a body over it cannot be a row of the emulator's database. */
const SQLITE_MAX_BLOB = 1_000_000_000;

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

it("replicates a sparse file too large for a database row byte for byte, and the small files beside it keep arriving", async () => {
  // The threshold is what keeps a body of 1 GiB out of the database: a file over it stands for one over SQLite's limit.
  expect(LARGE_BODY_BYTES).toBeLessThan(SQLITE_MAX_BLOB);
  await eventually(() => arrived("before.txt", "written before the large file\n"), 60_000);
  writeSparse(join(src, "disk.img"));
  writeFileSync(join(src, "beside.txt"), "written right after it\n");
  const expected = await sha256OfFile(join(src, "disk.img"));

  await eventually(async () => expect((await cloud.store.head(dataKey(SET, "disk.img")))?.meta[META.sha256]).toBe(expected), 120_000);
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
}, 300_000);
