// An endpoint that answers a byte every so often never trips an idle timeout:
// against one, `tidemark status`, `snapshots` and `timeline` sat for hours.
// The CLI's reads abandon a connection that moves less than a minimum while a
// request is on it, with an error that says so, in the answer's head and body
// alike; a connection resting in the pool between requests is left alone,
// also behind an https proxy, where the requests run in a tunnel inside the
// connection to the proxy.

import { readFileSync } from "node:fs";
import { Agent as HttpAgent, createServer as createHttpServer, get as httpGet } from "node:http";
import { Agent as HttpsAgent, createServer as createHttpsServer, get as httpsGet } from "node:https";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TARGET_READ_USE } from "../../agent/commands/target-store.ts";
import { makeS3Client, requestHandlerOptions, S3Store, SlowTransferError } from "../../lambdas/target/index.ts";
import { guardSlowTransfers } from "../../lambdas/target/slow-transfers.ts";
import { CountingProxy } from "../support/counting-proxy.ts";

/** Small enough for a test: the rule's shape is what matters, not the CLI's numbers. Where a request must fail. */
const RULE = { bytes: 64, windowMs: 300 } as const;
/**
 * Where a request must succeed: a window a loaded machine does not pass before the connection is made, the request
 * written or the first bytes of a large TLS answer produced (300 ms did once, at load 28). The waits that must outlast
 * a window (resting in the pool, reading late) are two of these.
 */
const ROOMY = { bytes: 64, windowMs: 1_500 } as const;

/** A server that sends `start` at once, then `filler` every 50 ms: never silent, never done. */
function dribbling(start: string, filler: string): Server {
  return createServer((socket: Socket) => {
    socket.on("error", () => {});
    socket.once("data", () => {
      socket.write(start);
      const timer = setInterval(() => socket.write(filler), 50);
      socket.on("close", () => clearInterval(timer));
    });
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function store(endpoint: string, rule: { readonly bytes: number; readonly windowMs: number } = RULE): S3Store {
  const client = makeS3Client({ region: "us-east-1", endpoint, maxAttempts: 1, http: { idleTimeoutMs: 10_000, minimumTransfer: rule } });
  return new S3Store(client, "bucket");
}

describe("a CLI read of an endpoint that answers byte by byte", () => {
  const inHead = dribbling("HTTP/1.1 200 OK\r\nX-Slow: ", "a");
  const inBody = dribbling("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nContent-Type: application/octet-stream\r\n\r\n{", " ");
  let headEndpoint = "";
  let bodyEndpoint = "";
  beforeAll(async () => {
    headEndpoint = await listen(inHead);
    bodyEndpoint = await listen(inBody);
  });
  afterAll(async () => {
    await Promise.all([inHead, inBody].map((server) => new Promise((resolve) => server.close(resolve))));
  });

  it("fails, saying how little the connection moved, while the answer's head trickles in", async () => {
    const reader = store(headEndpoint);
    await expect(reader.get("state/www/status.json")).rejects.toThrow(/moved \d+ bytes \(sent and received\) in 0.3 s .*at least 64 expected/);
    reader.client.destroy();
  });

  it("fails with the same error, not a bare \"aborted\", while the body trickles in", async () => {
    const reader = store(bodyEndpoint);
    await expect(reader.get("state/www/status.json")).rejects.toBeInstanceOf(SlowTransferError);
    reader.client.destroy();
  });

  it("is what the CLI's reads of the target are built with", () => {
    const options = requestHandlerOptions({ minimumTransfer: TARGET_READ_USE.minimumTransfer });
    expect(options.httpAgent).toHaveProperty("keepSocketAlive");
    expect(TARGET_READ_USE.minimumTransfer.windowMs).toBeGreaterThan(TARGET_READ_USE.idleTimeoutMs);
  });
});

describe("a guarded connection to an endpoint that answers", () => {
  const server = createHttpServer((request, response) => {
    request.resume();
    response.writeHead(200, { "content-type": "application/octet-stream" }).end(Buffer.alloc(10, 1));
  });
  let endpoint = "";
  let connections = 0;
  beforeAll(async () => {
    server.on("connection", () => connections++);
    endpoint = await listen(server);
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it("rests in the pool between requests for longer than a window and is used again", async () => {
    const reader = store(endpoint, ROOMY);
    expect((await reader.get("a"))?.body.length).toBe(10);
    await new Promise((resolve) => setTimeout(resolve, ROOMY.windowMs * 2));
    expect((await reader.get("b"))?.body.length).toBe(10);
    expect(connections).toBe(1);
    reader.client.destroy();
  });
});

describe("a guarded https connection through a proxy (CONNECT)", () => {
  const TLS_DIR = join(import.meta.dirname, "../fixtures/tls");
  const cert = readFileSync(join(TLS_DIR, "server.crt"));
  /** Big enough that the answer waits on the wire while the caller is not reading. */
  const BODY = 4 * 1024 * 1024;
  const server = createHttpsServer({ cert, key: readFileSync(join(TLS_DIR, "server.key")) }, (request, response) => {
    request.resume();
    response.writeHead(200, { "content-type": "application/octet-stream" }).end(Buffer.alloc(request.url === "/big" ? BODY : 10, 1));
  });
  let proxy: CountingProxy;
  let port = 0;
  let agent: HttpsAgent;
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
    proxy = await CountingProxy.start();
    agent = guardSlowTransfers(new HttpsAgent({ keepAlive: true, ca: cert, proxyEnv: { HTTPS_PROXY: proxy.url } }), ROOMY);
  });
  afterAll(async () => {
    agent.destroy();
    await proxy.stop();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  /** GETs `path`, reading the body only after `lateMs`; resolves with the bytes read or the error's name. */
  const get = (path: string, lateMs = 0) =>
    new Promise<number | string>((resolve) => {
      const request = httpsGet({ host: "127.0.0.1", port, path, agent }, (response) => {
        let length = 0;
        response.pause();
        setTimeout(() => response.resume(), lateMs);
        response.on("data", (chunk: Buffer) => (length += chunk.length));
        response.on("end", () => resolve(length));
        response.on("error", (error) => resolve(error.name));
      });
      request.on("error", (error) => resolve(error.name));
    });

  it("rests in the pool longer than a window and is used again: the proxy's own connection is not checked", async () => {
    expect(await get("/small")).toBe(10);
    await new Promise((resolve) => setTimeout(resolve, ROOMY.windowMs * 2));
    expect(await get("/small")).toBe(10);
    expect(proxy.tunnels).toHaveLength(1);
  });

  it("leaves an answer the caller reads late alone, as going direct does", async () => {
    expect(await get("/big", ROOMY.windowMs * 2)).toBe(BODY);
  });
});

describe("a guarded connection handed straight to a queued request", () => {
  // Answers the first request on a connection at once; trickles the head of the next.
  const server = createServer((socket: Socket) => {
    socket.on("error", () => {});
    let requests = 0;
    socket.on("data", () => {
      requests += 1;
      if (requests === 1) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok");
      else {
        socket.write("HTTP/1.1 200 OK\r\nX-Slow: ");
        const timer = setInterval(() => socket.write("a"), 50);
        socket.on("close", () => clearInterval(timer));
      }
    });
  });
  let port = 0;
  beforeAll(async () => {
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => server.close(resolve));
  });

  it("is watched for its new request, not exempt as the previous answer was complete", async () => {
    // One connection: Node hands it from the first request to the queued second without putting it back in the pool.
    // The first must be answered, so the window is roomy; the second still moves only a byte per 50 ms once its
    // request is written: about 30 in a window where 64 are asked for.
    const agent = guardSlowTransfers(new HttpAgent({ keepAlive: true, maxSockets: 1 }), ROOMY);
    const get = (path: string) =>
      new Promise<string>((resolve) => {
        const request = httpGet({ host: "127.0.0.1", port, path, agent }, (response) => {
          response.resume();
          response.on("end", () => resolve("answered"));
          response.on("error", (error) => resolve(error.name));
        });
        request.on("error", (error) => resolve(error.name));
      });
    expect(await Promise.all([get("/first"), get("/second")])).toEqual(["answered", "SlowTransferError"]);
    agent.destroy();
  });
});
