// A database file past the applier's in-memory limit on the local cloud:
// page writes travel as the pages written, and the applier streams the
// rebuild through the emulator (ranged GETs of the old object, a multipart
// upload checked against the file's SHA-256 before it completes). The parts
// no page write touched are copied server-side (UploadPartCopy): the emulator
// names each copied part's SHA-256 as S3 does, which proves the copy.

import { createHash, randomBytes } from "node:crypto";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { closeSync, createReadStream, ftruncateSync, mkdirSync, openSync, writeSync } from "node:fs";
import { IncomingMessage } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../agent/config.ts";
import { silentLogger } from "../../agent/log.ts";
import { startAgent, type RunningAgent } from "../../agent/runtime.ts";
import { CHUNK_SIZE } from "../../contract/delta-ranges.ts";
import { dataKey, META } from "../../contract/layout.ts";
import { IN_MEMORY_REBUILD_BYTES } from "../../lambdas/applier/delta-rebuild.ts";
import { partSize } from "../../lambdas/s3-multipart.ts";
import { eventually, startTestCloud, type TestCloud } from "../support/local-cloud.ts";
import { tempDir } from "../support/tree.ts";

const SET = "db";
const MiB = 1024 * 1024;
const SIZE = IN_MEMORY_REBUILD_BYTES + 9 * MiB + 321;

let cloud: TestCloud;
let agent: RunningAgent | undefined;
const work = tempDir();
const src = join(work.path, "src");
const file = join(src, "app.db");

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) if (Buffer.isBuffer(chunk)) hash.update(chunk);
  return hash.digest("hex");
}

beforeAll(async () => {
  cloud = await startTestCloud();
  mkdirSync(src);
  const fd = openSync(file, "w");
  ftruncateSync(fd, SIZE);
  writeSync(fd, randomBytes(4 * MiB), 0, 4 * MiB, 0);
  closeSync(fd);
  agent = await startAgent(loadConfig(cloud.writeConfig(work.path, [{ name: SET, path: "src" }])), silentLogger);
});

afterAll(async () => {
  await agent?.stop();
  await cloud?.stop();
  work.remove();
});

const arrived = async (sha256: string) => {
  await eventually(async () => expect((await cloud.store.head(dataKey(SET, "app.db")))?.meta[META.sha256]).toBe(sha256), 300_000, 500);
};

it("sends the pages written into a database file past the in-memory limit, and the target streams it back byte for byte", async () => {
  await arrived(await sha256OfFile(file));
  const sent = () => agent?.agent.journal.sets.counters(SET).bytesSent ?? 0;
  const before = sent();
  const fd = openSync(file, "r+");
  for (const page of [3, 9_000, Math.floor(SIZE / CHUNK_SIZE) - 2]) writeSync(fd, randomBytes(CHUNK_SIZE), 0, CHUNK_SIZE, page * CHUNK_SIZE);
  closeSync(fd);
  const expected = await sha256OfFile(file);
  await arrived(expected);
  // Three random pages in base64, and the message around them; the file is 73 MiB.
  expect(sent() - before).toBeLessThanOrEqual(3 * CHUNK_SIZE * 2 + 8192);
  // The bytes themselves, read back as a stream.
  expect(await cloud.store.hash(dataKey(SET, "app.db"))).toEqual({ sha256: expected, size: SIZE });
}, 600_000);

/** The part uploads (UploadPart, UploadPartCopy) the emulator in this process receives for key while `during` runs. */
async function partRequests(key: string, during: () => Promise<void>): Promise<{ uploaded: number; copied: number }> {
  const counted = { uploaded: 0, copied: 0 };
  const onRequest = (message: unknown) => {
    const request = message !== null && typeof message === "object" && "request" in message ? message.request : undefined;
    if (!(request instanceof IncomingMessage) || request.method !== "PUT") return;
    const url = new URL(request.url ?? "/", "http://emulator");
    if (!url.searchParams.has("uploadId") || !decodeURIComponent(url.pathname).endsWith(`/${key}`)) return;
    if (request.headers["x-amz-copy-source"] === undefined) counted.uploaded++;
    else counted.copied++;
  };
  subscribe("http.server.request.start", onRequest);
  try {
    await during();
  } finally {
    unsubscribe("http.server.request.start", onRequest);
  }
  return counted;
}

it("copies the parts no page write touched server-side, proven by the emulator's SHA-256 of each copy, and the file arrives exact", async () => {
  await arrived(await sha256OfFile(file));
  const part = partSize(SIZE);
  const parts = Math.ceil(SIZE / part);
  // A page in the first part and one in the sixth: the other parts hold the bytes the target has.
  const pages = [2 * MiB, 5 * part + 3 * CHUNK_SIZE];
  const requests = await partRequests(dataKey(SET, "app.db"), async () => {
    const fd = openSync(file, "r+");
    for (const offset of pages) writeSync(fd, randomBytes(CHUNK_SIZE), 0, CHUNK_SIZE, offset);
    closeSync(fd);
    await arrived(await sha256OfFile(file));
  });
  expect(requests).toEqual({ uploaded: pages.length, copied: parts - pages.length });
  expect(await cloud.store.hash(dataKey(SET, "app.db"))).toEqual({ sha256: await sha256OfFile(file), size: SIZE });
}, 600_000);
