import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { join } from "node:path";
import { createServer as createTlsServer, type TLSSocket } from "node:tls";
import { createServer as createTcpServer, type AddressInfo, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { giveBackBody, Http1Pool, HttpAnswerTooLargeError, MAX_ERROR_BODY_BYTES, releaseKeptBodies, HttpConnectionError, HttpProtocolError, HttpSlowTransferError, InvalidHttpRequestError } from "../../lambdas/http1-pool.ts";

const MiB = 1024 * 1024;
const closers: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

/** A Node HTTP server on 127.0.0.1; counts the connections it accepted. */
async function httpServer(handler: (req: IncomingMessage, res: ServerResponse, body: Buffer) => void): Promise<{ url: URL; connections: () => number }> {
  let connections = 0;
  const server: Server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => handler(req, res, Buffer.concat(chunks)));
  });
  // Idle connections stay open for a minute, as a server may keep them.
  server.keepAliveTimeout = 60_000;
  server.on("connection", () => (connections += 1));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(() => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  });
  return { url: new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}`), connections: () => connections };
}

/**
 * A TCP (or, given a certificate, TLS) server that answers every request head it reads with `answer` (raw bytes), for
 * answers Node's server would not write; `n` counts the requests over all connections, from 1.
 */
async function rawServer(answer: (socket: Socket, n: number) => void, tlsOptions?: { cert: Buffer; key: Buffer }): Promise<URL> {
  const sockets = new Set<Socket>();
  let n = 0;
  const onSocket = (socket: Socket) => {
    sockets.add(socket);
    let head = "";
    socket.on("data", (chunk: Buffer) => {
      head += chunk.toString("latin1");
      if (head.includes("\r\n\r\n")) {
        head = "";
        answer(socket, ++n);
      }
    });
    socket.on("error", () => undefined);
  };
  const server = tlsOptions ? createTlsServer(tlsOptions, onSocket) : createTcpServer(onSocket);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  closers.push(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => server.close(() => resolve()));
  });
  return new URL(`${tlsOptions ? "https" : "http"}://127.0.0.1:${(server.address() as AddressInfo).port}`);
}

function pool(url: URL, timeoutMs = 10_000): Http1Pool {
  const opened = new Http1Pool(url, { maxSockets: 4, timeoutMs });
  closers.push(() => Promise.resolve(opened.close()));
  return opened;
}

describe("Http1Pool", () => {
  it("sends the method, path, headers and body as given, and reads status, headers and body", async () => {
    const seen: { method?: string; url?: string; headers?: IncomingMessage["headers"]; body?: Buffer } = {};
    const server = await httpServer((req, res, body) => {
      Object.assign(seen, { method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(201, { etag: '"abc"', "x-amz-version-id": "v1", "x-amz-meta-mode": "644" });
      res.end("created");
    });
    const body = Buffer.from("héllo body");
    const answer = await pool(server.url).request("PUT", "/bucket/a%20b/c?versionId=1", { host: server.url.host, "content-length": String(body.length), "X-Amz-Meta-Mode": "644" }, body);
    expect(seen).toMatchObject({ method: "PUT", url: "/bucket/a%20b/c?versionId=1", body });
    expect(seen.headers).toMatchObject({ "x-amz-meta-mode": "644", "content-length": String(body.length) });
    expect(answer.status).toBe(201);
    expect(answer.headers).toMatchObject({ etag: '"abc"', "x-amz-version-id": "v1", "x-amz-meta-mode": "644" });
    expect(answer.body.toString()).toBe("created");
  });

  it("keeps a connection open between requests, and opens no more than maxSockets at once", async () => {
    const server = await httpServer((_req, res) => res.end("ok"));
    const requests = pool(server.url);
    for (let i = 0; i < 5; i++) await requests.request("GET", "/", { host: server.url.host }, new Uint8Array());
    expect(server.connections()).toBe(1);
    const answers = await Promise.all(Array.from({ length: 20 }, () => requests.request("GET", "/", { host: server.url.host }, new Uint8Array())));
    expect(answers.every((answer) => answer.body.toString() === "ok")).toBe(true);
    expect(server.connections()).toBeLessThanOrEqual(4);
  });

  it("reads a chunked answer, and a HEAD answer's length without a body", async () => {
    const server = await httpServer((req, res) => {
      if (req.method === "HEAD") {
        res.writeHead(200, { "content-length": "1234" });
        res.end();
        return;
      }
      res.write("first,");
      setTimeout(() => res.end("second"), 10);
    });
    const requests = pool(server.url);
    const chunked = await requests.request("GET", "/", { host: server.url.host }, new Uint8Array());
    expect(chunked.headers["transfer-encoding"]).toBe("chunked");
    expect(chunked.body.toString()).toBe("first,second");
    // The pieces as they arrived: the two chunks the server wrote.
    expect(chunked.chunks.map((chunk) => chunk.toString())).toEqual(["first,", "second"]);
    const head = await requests.request("HEAD", "/", { host: server.url.host }, new Uint8Array());
    expect(head.headers["content-length"]).toBe("1234");
    expect(head.body.length).toBe(0);
    // The same connection goes on after both.
    expect((await requests.request("GET", "/", { host: server.url.host }, new Uint8Array())).body.toString()).toBe("first,second");
    expect(server.connections()).toBe(1);
  });

  it("skips a 100 Continue, reads an answer that ends with the connection, and joins repeated headers as Node does", async () => {
    const url = await rawServer((socket) => {
      socket.write("HTTP/1.1 100 Continue\r\n\r\n");
      socket.end("HTTP/1.1 200 OK\r\nx-multi: a\r\nX-Multi: b\r\ncontent-type: text/plain\r\ncontent-type: ignored\r\nset-cookie: c=1\r\nset-cookie: d=2\r\n\r\nuntil the end");
    });
    const requests = pool(url);
    const answer = await requests.request("GET", "/", { host: url.host }, new Uint8Array());
    expect(answer.status).toBe(200);
    expect(answer.headers).toMatchObject({ "x-multi": "a, b", "content-type": "text/plain", "set-cookie": ["c=1", "d=2"] });
    expect(answer.body.toString()).toBe("until the end");
    // The server closed that connection: the next request opens another.
    expect((await requests.request("GET", "/", { host: url.host }, new Uint8Array())).body.toString()).toBe("until the end");
  });

  it("fails with ECONNRESET (as Node's client does) when the connection drops before the whole answer", async () => {
    const url = await rawServer((socket) => socket.end("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort"));
    const error = await pool(url)
      .request("GET", "/", { host: url.host }, new Uint8Array())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpConnectionError);
    expect(error).toMatchObject({ code: "ECONNRESET" });
  });

  it("fails with ETIMEDOUT when the server does not answer in time", async () => {
    const url = await rawServer(() => undefined);
    const error = await pool(url, 200)
      .request("GET", "/", { host: url.host }, new Uint8Array())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpConnectionError);
    expect(error).toMatchObject({ code: "ETIMEDOUT", message: `no answer from ${url.host} in 0.2 s` });
  });

  it("refuses a body longer than the request allows from its head, before the body comes, and by its chunks", async () => {
    // The head promises ten million bytes and ten come: the refusal needs no more of them (else the request times out).
    const lengthUrl = await rawServer((socket) => socket.write("HTTP/1.1 200 OK\r\ncontent-length: 10000000\r\n\r\n0123456789"));
    await expect(pool(lengthUrl, 5_000).request("GET", "/", {}, new Uint8Array(), 100)).rejects.toThrow(HttpAnswerTooLargeError);
    const chunkedUrl = await rawServer((socket) => socket.write("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n40\r\n" + "x".repeat(64) + "\r\n40\r\n" + "y".repeat(64) + "\r\n0\r\n\r\n"));
    await expect(pool(chunkedUrl, 5_000).request("GET", "/", {}, new Uint8Array(), 100)).rejects.toThrow(HttpAnswerTooLargeError);
    expect((await pool(chunkedUrl, 5_000).request("GET", "/", {}, new Uint8Array(), 128)).body.length).toBe(128);
    const endUrl = await rawServer((socket) => socket.end("HTTP/1.1 200 OK\r\n\r\n" + "z".repeat(200)));
    await expect(pool(endUrl, 5_000).request("GET", "/", {}, new Uint8Array(), 100)).rejects.toThrow(HttpAnswerTooLargeError);
  });

  it("refuses an answer that is not HTTP/1.x", async () => {
    const url = await rawServer((socket) => socket.write("SSH-2.0-OpenSSH\r\n\r\n"));
    await expect(pool(url).request("GET", "/", { host: url.host }, new Uint8Array())).rejects.toBeInstanceOf(HttpProtocolError);
  });

  it("refuses a header value that would split the request (CR, LF) and sends nothing", async () => {
    const server = await httpServer((_req, res) => res.end());
    const requests = pool(server.url);
    for (const value of ["a\r\nx-injected: 1", "a\nb", "nul\0", "日本"]) {
      await expect(requests.request("PUT", "/", { host: server.url.host, "x-amz-meta-name": value }, new Uint8Array())).rejects.toBeInstanceOf(InvalidHttpRequestError);
    }
    await expect(requests.request("PUT", "/", { host: server.url.host, "bad name": "v" }, new Uint8Array())).rejects.toBeInstanceOf(InvalidHttpRequestError);
    expect(server.connections()).toBe(0);
  });

  it("speaks https, checking the server's certificate, and resumes the TLS session on a new connection", async () => {
    const tlsDir = join(import.meta.dirname, "../fixtures/tls");
    const cert = readFileSync(join(tlsDir, "server.crt"));
    const resumed: boolean[] = [];
    const server = createHttpsServer({ cert, key: readFileSync(join(tlsDir, "server.key")) }, (req, res) => {
      resumed.push((req.socket as TLSSocket).isSessionReused());
      // Each answer closes its connection: the next request needs a new one.
      res.writeHead(200, { connection: "close" });
      res.end("secure");
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    closers.push(() => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    });
    const url = new URL(`https://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const trusting = new Http1Pool(url, { maxSockets: 2, timeoutMs: 10_000, ca: cert });
    closers.push(() => Promise.resolve(trusting.close()));
    for (let i = 0; i < 3; i++) expect((await trusting.request("GET", "/", { host: url.host }, new Uint8Array())).body.toString()).toBe("secure");
    expect(resumed[0]).toBe(false);
    expect(resumed.slice(1)).toEqual([true, true]);
    // Without the certificate among the trusted ones, nothing is sent.
    const error = await pool(url)
      .request("GET", "/", { host: url.host }, new Uint8Array())
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpConnectionError);
    expect(resumed).toHaveLength(3);
  });

  it("lets a process end while its connections are idle and open (the server would keep them for a minute)", async () => {
    const server = await httpServer((_req, res) => res.end("ok"));
    const script = `import { Http1Pool } from ${JSON.stringify(new URL("../../lambdas/http1-pool.ts", import.meta.url).href)};
const pool = new Http1Pool(new URL(${JSON.stringify(server.url.href)}), { maxSockets: 2, timeoutMs: 60_000 });
const answer = await pool.request("GET", "/", { host: ${JSON.stringify(server.url.host)} }, new Uint8Array());
process.stdout.write(answer.body.toString());`;
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code).toBe(0);
    expect(out).toBe("ok");
    expect(server.connections()).toBe(1);
  }, 30_000);

  it("refuses requests once closed", async () => {
    const server = await httpServer((_req, res) => res.end());
    const requests = pool(server.url);
    requests.close();
    await expect(requests.request("GET", "/", { host: server.url.host }, new Uint8Array())).rejects.toMatchObject({ code: "ECONNRESET" });
  });
});

describe("Http1Pool reads answers as Node's client does", () => {
  const get = (requests: Http1Pool, url: URL) => requests.request("GET", "/", { host: url.host }, new Uint8Array());

  it.each([
    ["a space before a header's colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", /header name is not a token/],
    ["transfer-encoding with content-length", "HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", /both transfer-encoding and content-length/],
    ["a head whose lines end by LF alone (at once, not at the timeout)", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", /LF without CR/],
  ])("refuses %s", async (_what, answer, message) => {
    // The server keeps the connection open: only the refusal ends the request.
    const url = await rawServer((socket) => socket.write(answer));
    const error = await get(pool(url, 600_000), url).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(HttpProtocolError);
    expect(error).toMatchObject({ message: expect.stringMatching(message) as string });
  });

  it("ignores a stray CRLF after a complete answer, in the same packet or later, and keeps the connection", async () => {
    let answers = 0;
    const url = await rawServer((socket) => {
      answers += 1;
      if (answers === 1) socket.write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok\r\n");
      else if (answers === 2) {
        socket.write("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\ntwo");
        setImmediate(() => socket.write("\r\n"));
      } else socket.write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nthree");
    });
    const requests = new Http1Pool(url, { maxSockets: 1, timeoutMs: 10_000 });
    closers.push(() => Promise.resolve(requests.close()));
    expect((await get(requests, url)).body.toString()).toBe("ok");
    expect((await get(requests, url)).body.toString()).toBe("two");
    expect((await get(requests, url)).body.toString()).toBe("three");
    expect(answers).toBe(3);
  });

  it("keeps each answer's head and body whole though every read lands in the same buffer: split heads, split chunks, later answers", async () => {
    let answers = 0;
    const later = (socket: Socket, ...pieces: string[]) => {
      const [first, ...rest] = pieces;
      if (first !== undefined) socket.write(first);
      if (rest.length > 0) setTimeout(() => later(socket, ...rest), 20);
    };
    const url = await rawServer((socket) => {
      answers += 1;
      if (answers === 1) later(socket, "HTTP/1.1 200 OK\r\nConte", "nt-Length: 6\r\nX-Name: fi", "rst\r\n\r\nfir", "st!");
      else if (answers === 2) later(socket, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nsec", "\r\n3", "\r\nond\r\n0\r\n\r\n");
      else later(socket, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Name: third\r\n\r\nxxxxxxxxxxxx");
    });
    const requests = new Http1Pool(url, { maxSockets: 1, timeoutMs: 10_000 });
    closers.push(() => Promise.resolve(requests.close()));
    // Bounded: read into one buffer made from its Content-Length (a piece copied at each read).
    const first = await requests.request("GET", "/", { host: url.host }, new Uint8Array(), 100);
    const second = await get(requests, url);
    const third = await get(requests, url);
    expect([first.headers["x-name"], first.body.toString(), first.chunks.length]).toEqual(["first", "first!", 1]);
    expect([second.body.toString(), second.chunks.map(String)]).toEqual(["second", ["sec", "ond"]]);
    expect([third.headers["x-name"], third.body.toString()]).toEqual(["third", "xxxxxxxxxxxx"]);
  });

  it("keeps one socket's half-read head, chunk and chunk-size line whole while another socket's answer fills the shared read buffer", async () => {
    let release: () => void = () => undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    const url = await rawServer((socket, n) => {
      if (n === 1) {
        // Stops inside a chunk-size line ("1" of "10"); the rest comes after the other socket's whole answer was read.
        socket.write("HTTP/1.1 200 OK\r\nX-Name: aaaaaaaa\r\nTransfer-Encoding: chunked\r\n\r\n4\r\naaaa\r\n1");
        void released.then(() => socket.write(`0\r\n${"A".repeat(16)}\r\n0\r\nX-Trailer: t\r\n\r\n`));
      } else socket.write(`HTTP/1.1 200 OK\r\nX-Name: bbbbbbbb\r\nContent-Length: 60000\r\n\r\n${"b".repeat(60_000)}`);
    });
    const requests = pool(url);
    const first = get(requests, url);
    // The first socket's head and partial chunk-size line are read before the second request starts.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const second = await get(requests, url);
    expect(second.body.toString() === "b".repeat(60_000)).toBe(true);
    release();
    const answer = await first;
    expect([answer.headers["x-name"], answer.body.toString()]).toEqual(["aaaaaaaa", `aaaa${"A".repeat(16)}`]);
  });

  it("over TLS (its own read path), keeps a split head, a split chunk-size line and trailers whole", async () => {
    const tlsDir = join(import.meta.dirname, "../fixtures/tls");
    const cert = readFileSync(join(tlsDir, "server.crt"));
    const pieces = ["HTTP/1.1 200 OK\r\nX-Na", "me: secure\r\nTransfer-Encoding: chunked\r", "\n\r\n1", "0\r\n0123456789", "abcdef\r\n0\r\nX-T: 1\r", "\n\r\n"];
    const url = await rawServer(
      (socket) => {
        const next = (i: number) => {
          socket.write(pieces[i] ?? "");
          if (i + 1 < pieces.length) setTimeout(() => next(i + 1), 20);
        };
        next(0);
      },
      { cert, key: readFileSync(join(tlsDir, "server.key")) },
    );
    const requests = new Http1Pool(url, { maxSockets: 1, timeoutMs: 10_000, ca: cert });
    closers.push(() => Promise.resolve(requests.close()));
    const answer = await get(requests, url);
    expect([answer.headers["x-name"], answer.body.toString()]).toEqual(["secure", "0123456789abcdef"]);
  });

  it("trims only spaces and tabs around a header value", async () => {
    const url = await rawServer((socket) => socket.write("HTTP/1.1 200 OK\r\nX-Value: \t a\u000b\u00a0 \t\r\nContent-Length: 0\r\n\r\n", "latin1"));
    const answer = await get(pool(url), url);
    expect(answer.headers["x-value"]).toBe("a\u000b\u00a0");
  });
});

describe("Http1Pool's large bodies given back", () => {
  // Bounded as the restore's reads are: only a bounded request's success is read into a buffer made (or kept) for it.
  const get = (requests: Http1Pool, url: URL, path: string) => requests.request("GET", path, { host: url.host }, new Uint8Array(), 16 * MiB);

  it("reads a later answer of the same length into a body given back, and never into one still held", async () => {
    // Each answer's bytes differ (its path's first letter), so a body read into twice would show it.
    const server = await httpServer((req, res) => res.end(Buffer.alloc(Number(req.url?.slice(2)), req.url?.slice(1, 2))));
    const requests = pool(server.url);
    const a = await get(requests, server.url, `/a${2 * MiB}`);
    const b = await get(requests, server.url, `/b${2 * MiB}`);
    // Both held: two buffers.
    expect(b.body === a.body).toBe(false);
    expect([a.body.every((x) => x === 0x61), b.body.every((x) => x === 0x62)]).toEqual([true, true]);
    giveBackBody(a.body);
    // Given twice, or a part of it, or a buffer never lent: kept once at most, so no two answers ever share one.
    giveBackBody(a.body);
    giveBackBody(b.body.subarray(0, MiB));
    giveBackBody(Buffer.alloc(2 * MiB));
    const c = await get(requests, server.url, `/c${2 * MiB}`);
    const d = await get(requests, server.url, `/d${2 * MiB}`);
    // Identity compared as booleans: a failure's diff of two 2 MiB buffers would take minutes.
    expect([c.body === a.body, d.body === a.body, d.body === b.body]).toEqual([true, false, false]);
    expect([b.body.every((x) => x === 0x62), c.body.every((x) => x === 0x63), d.body.every((x) => x === 0x64)]).toEqual([true, true, true]);
    // Another length, or a small body (a new buffer costs little), is read into a new buffer.
    giveBackBody(c.body);
    expect((await get(requests, server.url, `/e${3 * MiB}`)).body === c.body).toBe(false);
    const small = await get(requests, server.url, "/f1000");
    giveBackBody(small.body);
    expect((await get(requests, server.url, "/g1000")).body === small.body).toBe(false);
    expect((await get(requests, server.url, `/h${2 * MiB}`)).body === c.body).toBe(true);
  });

  it("when the kept memory is full, drops the bodies given back longest ago, so a length that repeats keeps being read into", async () => {
    const server = await httpServer((req, res) => res.end(Buffer.alloc(Number(req.url?.slice(2)), req.url?.slice(1, 2))));
    const requests = pool(server.url);
    // A restore's mid-size files and large files' last parts: lengths given back once and never asked for again (60 MiB).
    const odd: Buffer[] = [];
    for (let k = 0; k < 40; k++) odd.push((await get(requests, server.url, `/o${1.5 * MiB + k}`)).body);
    for (const body of odd) giveBackBody(body);
    const part = (await get(requests, server.url, `/p${8 * MiB}`)).body;
    giveBackBody(part);
    const next = await get(requests, server.url, `/q${8 * MiB}`);
    expect([next.body === part, next.body.every((x) => x === 0x71)]).toEqual([true, true]);
    // The newest of the odd lengths is still kept; the oldest made room.
    const [newest, oldest] = [await get(requests, server.url, `/r${1.5 * MiB + 39}`), await get(requests, server.url, `/s${1.5 * MiB}`)];
    expect([newest.body === odd[39], oldest.body === odd[0]]).toEqual([true, false]);
  });

  it("reads an unbounded request's or an error's body as its bytes come: never into a given-back body, never allocated from the head", async () => {
    const server = await httpServer((req, res) => res.end(Buffer.alloc(2 * MiB, "k")));
    const requests = pool(server.url);
    const given = (await get(requests, server.url, "/k")).body;
    giveBackBody(given);
    const unbounded = await requests.request("GET", "/", { host: server.url.host }, new Uint8Array());
    expect([unbounded.body === given, unbounded.chunks.length > 1, unbounded.body.every((x) => x === 0x6b)]).toEqual([false, true, true]);
    // A server that states 16 MiB and sends 4 bytes, on four sockets at once: nothing near 64 MiB is allocated.
    const liar = await rawServer((socket, n) => socket.write(`HTTP/1.1 ${n % 2 === 0 ? "500 Internal Server Error" : "200 OK"}\r\nContent-Length: ${16 * MiB}\r\n\r\nlies`));
    const lied = pool(liar, 1_000);
    const before = process.memoryUsage().arrayBuffers;
    const answers = [1, 2, 3, 4].map(() => lied.request("GET", "/", { host: liar.host }, new Uint8Array()).catch((e: unknown) => e));
    // All four heads are read before the requests time out.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const grown = process.memoryUsage().arrayBuffers - before;
    for (const error of await Promise.all(answers)) expect(error).toMatchObject({ code: "ETIMEDOUT" });
    expect(grown).toBeLessThan(8 * MiB);
    // The kept body was not taken by the error (the 500 above on the bounded pool would have): still read into.
    const bounded500 = await rawServer((socket) => socket.write(`HTTP/1.1 500 Internal Server Error\r\nContent-Length: ${2 * MiB}\r\n\r\n${"e".repeat(2 * MiB)}`));
    const error500 = await get(pool(bounded500), bounded500, "/");
    expect([error500.status, error500.body === given, error500.chunks.length > 1]).toEqual([500, false, true]);
    expect((await get(requests, server.url, "/k")).body === given).toBe(true);
  });
});

/**
 * Answers every request with a 500 whose body never ends (framed by a huge Content-Length, by chunks, or by the
 * connection's end), sending as fast as the client reads, up to `guard` bytes a connection (so that a client reading
 * it all ends too, with a body far too long, instead of hanging). Counts what it sent and the connections the client closed.
 */
async function endlessErrorServer(framing: "length" | "chunked" | "to-end", guard: number): Promise<{ url: URL; sent: () => number; closed: Promise<void> }> {
  let sent = 0;
  let closedOne!: () => void;
  const closed = new Promise<void>((resolve) => (closedOne = resolve));
  const head =
    framing === "length"
      ? `HTTP/1.1 500 Internal Server Error\r\nContent-Length: ${1024 * MiB}\r\n\r\n`
      : framing === "chunked"
        ? "HTTP/1.1 500 Internal Server Error\r\nTransfer-Encoding: chunked\r\n\r\n"
        : "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n\r\n";
  const block = Buffer.alloc(60 * 1024, "e");
  const piece = framing === "chunked" ? Buffer.concat([Buffer.from(`${block.length.toString(16)}\r\n`), block, Buffer.from("\r\n")]) : block;
  const url = await rawServer((socket) => {
    socket.once("close", () => closedOne());
    const start = "<Error><Code>InternalError</Code><Message>";
    socket.write(`${head}${framing === "chunked" ? `${start.length.toString(16)}\r\n${start}\r\n` : start}`, "latin1");
    let mine = 0;
    const pump = () => {
      while (!socket.destroyed && mine < guard) {
        mine += piece.length;
        sent += piece.length;
        if (!socket.write(piece)) {
          socket.once("drain", pump);
          return;
        }
      }
    };
    pump();
  });
  return { url, sent: () => sent, closed };
}

describe("Http1Pool's error bodies", () => {
  it("reads at most MAX_ERROR_BODY_BYTES of an error's endless body, says it was cut, and drops the connection (by length, by chunks, to the end)", async () => {
    const guard = 256 * MiB;
    for (const framing of ["length", "chunked", "to-end"] as const) {
      const server = await endlessErrorServer(framing, guard);
      const requests = pool(server.url, 5_000);
      const answer = await requests.request("GET", "/", { host: server.url.host }, new Uint8Array(), 8 * MiB);
      expect([framing, answer.status, answer.cut, answer.body.length]).toEqual([framing, 500, true, MAX_ERROR_BODY_BYTES]);
      expect(answer.body.toString("latin1", 0, 40)).toBe("<Error><Code>InternalError</Code><Messag");
      expect(answer.body.subarray(60).every((x) => x === 0x65 || x === 0x0d || x === 0x0a || (x >= 0x30 && x <= 0x66))).toBe(true);
      // The client closed the connection: the server stops sending, having sent no more than the socket buffers hold.
      await server.closed;
      expect(server.sent()).toBeLessThan(32 * MiB);
    }
  });

  it("reads an error's body of exactly MAX_ERROR_BODY_BYTES whole, not cut, and keeps the connection", async () => {
    const server = await httpServer((_req, res) => {
      res.writeHead(503, { "content-length": String(MAX_ERROR_BODY_BYTES) });
      res.end(Buffer.alloc(MAX_ERROR_BODY_BYTES, "s"));
    });
    const requests = pool(server.url);
    for (let i = 0; i < 2; i++) {
      const answer = await requests.request("GET", "/", { host: server.url.host }, new Uint8Array());
      expect([answer.status, answer.cut, answer.body.length]).toEqual([503, undefined, MAX_ERROR_BODY_BYTES]);
    }
    expect(server.connections()).toBe(1);
  });
});

describe("Http1Pool's chunk framing lines", () => {
  /** A chunked answer whose framing (not its data) never ends: an endless chunk-size line, or trailer lines without end. */
  async function endlessFraming(status: number, framing: "size-line" | "trailers"): Promise<{ url: URL; sent: () => number }> {
    let sent = 0;
    const url = await rawServer((socket) => {
      socket.write(`HTTP/1.1 ${status} X\r\nTransfer-Encoding: chunked\r\n\r\n${framing === "size-line" ? "1;ext=" : "3\r\nabc\r\n0\r\n"}`, "latin1");
      const piece = Buffer.from(framing === "size-line" ? "x".repeat(16 * 1024) : "X-Trailer: yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\r\n".repeat(256), "latin1");
      const pump = () => {
        // Guarded so that a client reading it all ends too (a body far too long) instead of hanging the test.
        while (!socket.destroyed && sent < 256 * MiB) {
          sent += piece.length;
          if (!socket.write(piece)) {
            socket.once("drain", pump);
            return;
          }
        }
      };
      pump();
    });
    return { url, sent: () => sent };
  }

  it("refuses a chunk-size line or trailers longer than a head may be, for an error's answer and a success's: neither is read without end", async () => {
    for (const status of [500, 200]) {
      for (const framing of ["size-line", "trailers"] as const) {
        const server = await endlessFraming(status, framing);
        const requests = pool(server.url, 5_000);
        const failed = await requests.request("GET", "/", { host: server.url.host }, new Uint8Array(), 8 * MiB).then(
          () => undefined,
          (error: unknown) => error,
        );
        expect([status, framing, failed instanceof HttpProtocolError]).toEqual([status, framing, true]);
        expect(server.sent()).toBeLessThan(32 * MiB);
      }
    }
  });
});

describe("Http1Pool's given-back bodies released", () => {
  it("after releaseKeptBodies, a body given back before is not read into again", async () => {
    const server = await httpServer((_req, res) => res.end(Buffer.alloc(2 * MiB, "r")));
    const requests = pool(server.url);
    const read = async () => (await requests.request("GET", "/", { host: server.url.host }, new Uint8Array(), 8 * MiB)).body;
    const first = await read();
    giveBackBody(first);
    releaseKeptBodies();
    const second = await read();
    expect(second === first).toBe(false);
    // Not released, it is (the check above is not vacuous).
    giveBackBody(second);
    expect((await read()) === second).toBe(true);
  });
});

/** Answers a request with a head announcing `length` bytes, then trickles them a byte every `everyMs`. */
function trickle(length: number, everyMs: number): (socket: Socket) => void {
  return (socket) => {
    socket.write(`HTTP/1.1 206 Partial Content\r\nContent-Length: ${length}\r\nContent-Range: bytes 0-${length - 1}/${length}\r\n\r\n`, "latin1");
    let sent = 0;
    const timer = setInterval(() => {
      if (socket.destroyed || sent >= length) clearInterval(timer);
      else {
        socket.write("x");
        sent += 1;
      }
    }, everyMs);
    socket.once("close", () => clearInterval(timer));
  };
}

describe("Http1Pool's minimum transfer", () => {
  const get = (requests: Http1Pool, url: URL) => requests.request("GET", "/", { host: url.host }, new Uint8Array());

  it("abandons a request whose connection trickles, naming what it waited for (never ends otherwise: each byte resets the idle timeout)", async () => {
    const url = await rawServer(trickle(1_000_000, 10));
    const guarded = new Http1Pool(url, { maxSockets: 1, timeoutMs: 10_000, minimumTransfer: { bytes: 1024, windowMs: 100 } });
    closers.push(() => Promise.resolve(guarded.close()));
    const failure = await get(guarded, url).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(HttpSlowTransferError);
    expect(failure).toMatchObject({ code: "ETIMEDOUT" });
    expect(String(failure)).toMatch(new RegExp(`the connection to ${url.host} moved \\d+ bytes \\(sent and received\\) in 0\\.1 s while a GET waited for its answer \\(at least 1024 expected\\)`));
  });

  it("lets a slow answer finish where no minimum is set (the applier's pool)", async () => {
    const url = await rawServer(trickle(5, 10));
    const answer = await get(pool(url), url);
    expect(answer.body.toString()).toBe("xxxxx");
  });

  it("stops watching when the answer ends: an idle kept-alive connection is not abandoned, and serves the next request", async () => {
    const server = await httpServer((_req, res) => res.end("hello"));
    const guarded = new Http1Pool(server.url, { maxSockets: 1, timeoutMs: 10_000, minimumTransfer: { bytes: 1, windowMs: 100 } });
    closers.push(() => Promise.resolve(guarded.close()));
    expect((await get(guarded, server.url)).body.toString()).toBe("hello");
    // Several windows with the connection idle.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect((await get(guarded, server.url)).body.toString()).toBe("hello");
    expect(server.connections()).toBe(1);
  });
});
