// The restore's reads of object bytes (lambdas/target/restore-store.ts): with
// nothing between tidemark and the bucket's endpoint, direct signed GETs and
// no SDK request, for a whole object, a range, a version, a missing object,
// an ETag that no longer holds, and an empty object; an object larger than
// one direct GET holds streams through the SDK. A proxy for the endpoint, or
// a CA bundle for an https one, keeps every read in the SDK's handler.

import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { S3Client } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { DIRECT_READ_BYTES, DIRECT_READ_LIMITS, directReachable, RestoreS3Store } from "../../lambdas/target/restore-store.ts";
import { SourceChangedError } from "../../lambdas/store/store.ts";
import { READ_IDLE_TIMEOUT_MS, READ_MINIMUM_TRANSFER } from "../../lambdas/target/http-settings.ts";
import { startTestEmulator } from "../support/fauxqs.ts";

const CREDENTIALS = { accessKeyId: "AKIDTIDEMARKTEST", secretAccessKey: "tidemark/secret+key" };

function clientFor(endpoint: string): S3Client {
  return new S3Client({ region: "eu-west-1", endpoint, forcePathStyle: true, credentials: CREDENTIALS, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" });
}

/** Counts the SDK client's requests. */
function countSends(client: S3Client): { sends: number } {
  const counter = { sends: 0 };
  const send = client.send.bind(client);
  client.send = ((command: Parameters<typeof send>[0]) => {
    counter.sends++;
    return send(command);
  }) as typeof client.send;
  return counter;
}

async function bytesOf(stream: { body: AsyncIterable<Uint8Array> } | undefined): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream?.body ?? []) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe("RestoreS3Store.readStream", () => {
  it("reads by direct GETs where nothing stands between it and the endpoint; a larger object streams through the SDK", async () => {
    const emulator = await startTestEmulator();
    try {
      const client = clientFor(emulator.endpoint);
      const bucket = emulator.newBucket();
      const setup = new RestoreS3Store(client, bucket, {}, {});
      const body = randomBytes(300_000);
      const first = await setup.put("data/a b+ä", body, { "tidemark-mode": "644" });
      await setup.put("empty", Buffer.alloc(0), { "tidemark-mode": "600" });
      const large = randomBytes(DIRECT_READ_BYTES + 10);
      await setup.put("large", large, {});

      // A CA bundle in the environment adds nothing to an http endpoint: still direct.
      const store = new RestoreS3Store(client, bucket, {}, { AWS_CA_BUNDLE: "/nonexistent.pem" });
      const counter = countSends(client);
      expect(await store.readsDirect()).toBe(true);
      const whole = await store.readStream("data/a b+ä");
      expect(whole).toMatchObject({ size: body.length, meta: { "tidemark-mode": "644" } });
      expect((await bytesOf(whole)).equals(body)).toBe(true);
      const etag = whole?.etag;
      if (etag === undefined) throw new Error("the GET told no ETag");
      const range = await store.readStream("data/a b+ä", { offset: 1000, length: 5000, ifMatch: etag });
      expect(range?.size).toBe(body.length);
      expect((await bytesOf(range)).equals(body.subarray(1000, 6000))).toBe(true);
      expect(await store.readStream("data/missing")).toBeUndefined();
      const empty = await store.readStream("empty");
      expect(empty).toMatchObject({ size: 0, meta: { "tidemark-mode": "600" } });
      expect((await bytesOf(empty)).length).toBe(0);
      // Only the empty object's read went through the SDK (S3 refuses a range of nothing).
      expect(counter.sends).toBe(1);
      await setup.put("data/a b+ä", randomBytes(10), {});
      const sdkForEmpty = counter.sends;
      await expect(store.readStream("data/a b+ä", { offset: 0, length: 10, ifMatch: etag })).rejects.toThrow(SourceChangedError);
      expect(counter.sends - sdkForEmpty).toBe(0);
      expect((await bytesOf(await store.readStream("data/a b+ä", { versionId: first.versionId ?? "null" }))).length).toBeGreaterThan(0);

      const before = counter.sends;
      const largeRead = await store.readStream("large");
      expect(largeRead?.size).toBe(large.length);
      expect((await bytesOf(largeRead)).equals(large)).toBe(true);
      expect(counter.sends - before).toBe(1);
      const part = await store.readStream("large", { offset: DIRECT_READ_BYTES, length: 10 });
      expect((await bytesOf(part)).equals(large.subarray(DIRECT_READ_BYTES))).toBe(true);
      expect(counter.sends - before).toBe(1);
    } finally {
      await emulator.server.stop();
    }
  });

  it("reads through the SDK when a proxy applies to the endpoint", async () => {
    const emulator = await startTestEmulator();
    try {
      const client = clientFor(emulator.endpoint);
      const bucket = emulator.newBucket();
      await new RestoreS3Store(client, bucket, {}, {}).put("k", Buffer.from("hello"), {});
      // NO_PROXY names the emulator's host: the proxy (which does not exist) is never used, by the SDK or directly.
      const store = new RestoreS3Store(client, bucket, { proxy: "http://127.0.0.1:9" }, { NO_PROXY: "127.0.0.1" });
      expect(await store.readsDirect()).toBe(true);
      const proxied = new RestoreS3Store(client, bucket, { proxy: "http://127.0.0.1:9" }, {});
      expect(await proxied.readsDirect()).toBe(false);
    } finally {
      await emulator.server.stop();
    }
  });

  it("reads through the SDK where a server ignores the direct GET's Range, refusing a body longer than the range", async () => {
    const object = randomBytes(300_000);
    const seen: { sdk: boolean; range: string | undefined }[] = [];
    // Answers the SDK's GETs (they carry its invocation id) as S3 does; every other GET ignores the Range: 200, the whole object.
    const server: Server = createServer((req, res) => {
      const sdk = req.headers["amz-sdk-invocation-id"] !== undefined;
      const range = req.headers.range;
      seen.push({ sdk, range });
      const asked = /^bytes=(\d+)-(\d+)$/.exec(range ?? "");
      const headers = { etag: '"e"', "last-modified": new Date(0).toUTCString(), "content-type": "application/octet-stream" };
      if (sdk && asked) {
        const from = Number(asked[1]);
        const to = Math.min(Number(asked[2]), object.length - 1);
        res.writeHead(206, { ...headers, "content-length": String(to - from + 1), "content-range": `bytes ${from}-${to}/${object.length}` });
        res.end(object.subarray(from, to + 1));
        return;
      }
      res.writeHead(200, { ...headers, "content-length": String(object.length) });
      res.end(object);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const client = clientFor(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
      const store = new RestoreS3Store(client, "bucket", {}, {});
      expect(await store.readsDirect()).toBe(true);
      // A range: the whole object's answer is longer than the range, refused; the SDK reads the range.
      const range = await store.readStream("k", { offset: 1000, length: 5000 });
      expect((await bytesOf(range)).equals(object.subarray(1000, 6000))).toBe(true);
      // The whole object: a 200 to a ranged GET is not taken as the answer either.
      const whole = await store.readStream("k");
      expect((await bytesOf(whole)).equals(object)).toBe(true);
      expect(seen.map((request) => request.sdk)).toEqual([false, true, false, true]);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("gives up on a direct GET from an endpoint that trickles a byte now and then, or sends nothing, naming what it waited for", async () => {
    // Every request gets a 206 head announcing a megabyte, then a byte every 10 ms (never idle, never done); the
    // path /silent/ gets nothing at all.
    const sockets = new Set<Socket>();
    const server = createTcpServer((socket) => {
      sockets.add(socket);
      let head = "";
      socket.on("data", (chunk: Buffer) => {
        head += chunk.toString("latin1");
        if (!head.includes("\r\n\r\n") || head.startsWith("GET /bucket/silent")) return;
        socket.write("HTTP/1.1 206 Partial Content\r\nContent-Length: 1048576\r\nContent-Range: bytes 0-1048575/1048576\r\n\r\n", "latin1");
        const timer = setInterval(() => socket.write("x"), 10);
        socket.once("close", () => clearInterval(timer));
      });
      socket.on("error", () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const client = new S3Client({ region: "eu-west-1", endpoint, forcePathStyle: true, credentials: CREDENTIALS, maxAttempts: 1 });
      const store = new RestoreS3Store(client, "bucket", {}, {}, { idleTimeoutMs: 200, minimumTransfer: { bytes: 1024, windowMs: 100 } });
      expect(await store.readsDirect()).toBe(true);
      await expect(store.readStream("k")).rejects.toThrow(/moved \d+ bytes \(sent and received\) in 0\.1 s while a GET waited for its answer \(at least 1024 expected\)/);
      const patient = new RestoreS3Store(client, "bucket", {}, {}, { idleTimeoutMs: 200, minimumTransfer: { bytes: 1024, windowMs: 60_000 } });
      await expect(patient.readStream("silent/k")).rejects.toThrow(/no answer from 127\.0\.0\.1:\d+ in 0\.2 s/);
      client.destroy();
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    // By default a direct GET gives up as the CLI's SDK reads do.
    expect(DIRECT_READ_LIMITS).toEqual({ idleTimeoutMs: READ_IDLE_TIMEOUT_MS, minimumTransfer: READ_MINIMUM_TRANSFER });
    expect(READ_IDLE_TIMEOUT_MS).toBe(15_000);
    expect(READ_MINIMUM_TRANSFER).toEqual({ bytes: 1024, windowMs: 30_000 });
  });

  it("tells which endpoints a direct request reaches as the SDK's would", () => {
    const http = new URL("http://127.0.0.1:4566/");
    const https = new URL("https://bucket.s3.eu-west-1.amazonaws.com/");
    expect(directReachable(http, {}, {})).toBe(true);
    expect(directReachable(https, {}, {})).toBe(true);
    expect(directReachable(http, {}, { AWS_CA_BUNDLE: "/ca.pem" })).toBe(true);
    expect(directReachable(https, {}, { AWS_CA_BUNDLE: "/ca.pem" })).toBe(false);
    expect(directReachable(https, { caBundle: "/ca.pem" }, {})).toBe(false);
    expect(directReachable(https, {}, { HTTPS_PROXY: "http://proxy:3128" })).toBe(false);
    expect(directReachable(https, {}, { HTTPS_PROXY: "http://proxy:3128", NO_PROXY: ".amazonaws.com" })).toBe(true);
    expect(directReachable(http, {}, { HTTPS_PROXY: "http://proxy:3128" })).toBe(true);
    expect(directReachable(http, { proxy: "http://proxy:3128" }, {})).toBe(false);
    expect(directReachable(https, { proxy: false }, { HTTPS_PROXY: "http://proxy:3128" })).toBe(true);
  });
});
