// A keep-alive HTTP/1.1 client for signed-requests.ts: one request at a time
// per connection, the whole answer read into memory (the single-object
// requests it serves are at most one part's size). Node's http.request spent
// ~0.34 ms of CPU per small PUT on its agent's socket bookkeeping, the
// ClientRequest and IncomingMessage streams and their events; the exchange
// itself (a request head, a body, an answer head and body on one socket) needs
// a fraction of that (bench/notes.md). What it does not need, it refuses
// plainly: a header value Node would refuse, an answer that is not HTTP/1.x.
// Every socket reads into one buffer (net's onread), and a bounded request's
// successful answer is copied from it into a buffer of its Content-Length: no
// fresh buffer, stream event and Buffer object a read, and one contiguous body
// an answer (other bodies are copied out piece by piece as they come). A large
// body its reader is done with can be given back (giveBackBody) and is read
// into again: each new one is memory the garbage collector must account for
// and reclaim (a restore's 256 MiB file cost ~14 full collections).

import type { IncomingHttpHeaders } from "node:http";
import net from "node:net";
import tls from "node:tls";

/** Characters Node's http refuses in a header value (CR, LF, NUL and other controls but TAB). */
const INVALID_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers whose repeats Node's IncomingMessage drops (the first one counts); others are joined with ", ", set-cookie kept as a list. */
const FIRST_ONLY = new Set(["age", "authorization", "content-length", "content-type", "etag", "expires", "from", "host", "if-modified-since", "if-unmodified-since", "last-modified", "location", "max-forwards", "proxy-authorization", "referer", "retry-after", "server", "user-agent"]);
/** A socket idle this long is closed by us before the server does (a server closing it while we reuse it loses the request). */
const DEFAULT_IDLE_MS = 4_000;
/** A server's keep-alive timeout is trusted minus this margin. */
const KEEP_ALIVE_MARGIN_MS = 1_000;
const MAX_HEAD_BYTES = 64 * 1024;
/** A request bounded to this many bytes or fewer has a success's body (by its Content-Length) read into one buffer made when the head is read. */
const PREALLOCATED_BODY_BYTES = 16 * 1024 * 1024;
/**
 * Of an error's answer (3xx, 4xx, 5xx) at most this much of the body is read, for its code and message: a broken or
 * hostile endpoint answering 500 with an endless body would otherwise be read (and held) to its end. The rest is not
 * read: the connection is dropped, and the answer says its body was cut (Http1Response.cut).
 */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;

/**
 * What every connection's socket reads into. A read's bytes are parsed, and whatever is kept copied out, before the
 * callback returns, so one buffer serves every socket of the process (reads run one at a time on its thread).
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** Bodies this long or longer may be given back and read into again. */
const RECYCLED_BODY_BYTES = 1024 * 1024;
/** At most this much memory of given-back bodies waits for a later answer. */
const MAX_KEPT_BODY_BYTES = 64 * 1024 * 1024;
/** Bodies handed out that may come back: only these are ever kept (a buffer anyone else made is ignored). */
const lentBodies = new WeakSet<Uint8Array>();
/** Given-back bodies by their length, for answers of the same length. */
const keptBodies = new Map<number, Buffer[]>();
let keptBytes = 0;

/** A buffer for a body of `length` bytes: a given-back one of that length when one waits. */
function bodyBuffer(length: number): Buffer {
  if (length < RECYCLED_BODY_BYTES) return Buffer.allocUnsafe(length);
  const waiting = keptBodies.get(length);
  const kept = waiting?.pop();
  if (kept) keptBytes -= length;
  if (waiting?.length === 0) keptBodies.delete(length);
  const body = kept ?? Buffer.allocUnsafe(length);
  lentBodies.add(body);
  return body;
}

/**
 * Gives back an answer's body (its one chunk) that the caller holds no more and no one reads any more: a later answer
 * of the same length is read into it. Only the body object itself counts; anything else (a part of it, a small body,
 * a buffer of the caller's own, one given back already) is ignored. When the kept memory is full, the bodies given back
 * longest ago make room: lengths that never come again (a mid-size file's, a large file's last part) age out, and the
 * one that repeats (a large file's parts) keeps being read into.
 */
export function giveBackBody(body: Uint8Array): void {
  if (!lentBodies.delete(body) || !(body instanceof Buffer) || body.length > MAX_KEPT_BODY_BYTES) return;
  // The Map's order is that of the lengths' last give-back, oldest first; each length's list is oldest first too.
  for (const [length, kept] of keptBodies) {
    while (kept.length > 0 && keptBytes + body.length > MAX_KEPT_BODY_BYTES) {
      kept.shift();
      keptBytes -= length;
    }
    if (kept.length === 0) keptBodies.delete(length);
    if (keptBytes + body.length <= MAX_KEPT_BODY_BYTES) break;
  }
  const kept = keptBodies.get(body.length) ?? [];
  kept.push(body);
  keptBodies.delete(body.length);
  keptBodies.set(body.length, kept);
  keptBytes += body.length;
}

/** Drops the given-back bodies waiting for a later answer (a restore that ended): their memory is the garbage collector's again. */
export function releaseKeptBodies(): void {
  keptBodies.clear();
  keptBytes = 0;
}

export interface Http1Response {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  /** The body in one Buffer (joined from its pieces when first read: only a bounded request's 2xx answer with a Content-Length comes in one). */
  readonly body: Buffer;
  /** The body in pieces: one for a bounded request's (maxBodyBytes up to 16 MiB) 2xx answer with a Content-Length; a reader that can take pieces is spared joining them. */
  readonly chunks: readonly Buffer[];
  /** An error's body longer than MAX_ERROR_BODY_BYTES: only its first MAX_ERROR_BODY_BYTES are here, the rest was never read (the connection was dropped). */
  readonly cut?: true;
}

/** A request that could not be written as HTTP/1.1 (a header Node would refuse too); nothing was sent. */
export class InvalidHttpRequestError extends Error {
  override readonly name = "InvalidHttpRequestError";
}

/** The connection failed or closed before the whole answer came; `code` is Node's for the same failure (ECONNRESET, ETIMEDOUT), so callers retry it as they would Node's. */
export class HttpConnectionError extends Error {
  override readonly name = "HttpConnectionError";
  readonly code: string;

  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * A connection moved fewer bytes than its pool's minimumTransfer while a request waited on it (an endpoint answering a
 * byte now and then never trips the idle timeout); `code` ETIMEDOUT, so callers retry it as a timeout.
 */
export class HttpSlowTransferError extends Error {
  override readonly name = "HttpSlowTransferError";
  readonly code = "ETIMEDOUT";
}

/** At least `bytes` sent and received in every `windowMs` a request is on a connection (as lambdas/target/slow-transfers.ts's rule for the SDK's connections). */
export interface MinimumTransfer {
  readonly bytes: number;
  readonly windowMs: number;
}

/** The answer's body is longer than the request allowed (a server that ignored a Range): refused before it is read; the connection is dropped. */
export class HttpAnswerTooLargeError extends Error {
  override readonly name = "HttpAnswerTooLargeError";
}

/** The server answered something that is not HTTP/1.x; the connection is dropped. */
export class HttpProtocolError extends Error {
  override readonly name = "HttpProtocolError";
}

export interface Http1PoolOptions {
  /** Connections open at once; more requests wait for one. */
  readonly maxSockets: number;
  /** A request with no progress (nothing sent, nothing received) for this long fails with ETIMEDOUT. */
  readonly timeoutMs: number;
  /** Certificates trusted for an https: origin. @default Node's root certificates */
  readonly ca?: string | Buffer;
  /**
   * A connection that moves less than this while a request is on it fails the request with HttpSlowTransferError.
   * None when absent: only for requests that always move bytes (reads); S3 may pad a long copy's answer now and then.
   */
  readonly minimumTransfer?: MinimumTransfer;
}

interface Pending {
  readonly method: string;
  readonly head: string;
  readonly body: Uint8Array;
  readonly maxBodyBytes: number | undefined;
  readonly resolve: (response: Http1Response) => void;
  readonly reject: (error: Error) => void;
}

/** Connections to one origin (http: or https:), kept open between requests. */
export class Http1Pool {
  readonly #url: URL;
  readonly #options: Http1PoolOptions;
  readonly #idle: Connection[] = [];
  readonly #waiting: Pending[] = [];
  #open = 0;
  #closed = false;
  /** The last TLS session the server offered: a new connection resumes it instead of a full handshake. */
  #tlsSession: Buffer | undefined;

  constructor(url: URL, options: Http1PoolOptions) {
    if (url.protocol !== "http:" && url.protocol !== "https:") throw new InvalidHttpRequestError(`cannot send HTTP/1.1 to a ${url.protocol} endpoint`);
    this.#url = url;
    this.#options = options;
  }

  /**
   * One exchange; `headers` go as given (names in the caller's case), with content-length set by the caller where the method needs it.
   * `maxBodyBytes`: a 2xx answer whose body is longer fails with HttpAnswerTooLargeError, before more of it is held (an
   * error's answer is read for its code, up to MAX_ERROR_BODY_BYTES of its body: a longer one is cut, Http1Response.cut).
   */
  request(method: string, path: string, headers: Readonly<Record<string, string>>, body: Uint8Array, maxBodyBytes?: number): Promise<Http1Response> {
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (const name in headers) {
      const value = headers[name] ?? "";
      if (!HEADER_NAME.test(name)) return Promise.reject(new InvalidHttpRequestError(`header name ${JSON.stringify(name)} is not a valid HTTP token`));
      if (INVALID_HEADER_VALUE.test(value)) return Promise.reject(new InvalidHttpRequestError(`header ${name} holds a character HTTP cannot carry (a control character, or one outside Latin-1)`));
      head += `${name}: ${value}\r\n`;
    }
    head += "connection: keep-alive\r\n\r\n";
    return new Promise((resolve, reject) => {
      if (this.#closed) {
        reject(new HttpConnectionError(`the connection pool to ${this.#url.host} is closed`, "ECONNRESET"));
        return;
      }
      this.#waiting.push({ method, head, body, maxBodyBytes, resolve, reject });
      this.#dispatch();
    });
  }

  /** Closes every idle connection and refuses new requests; requests in flight finish. */
  close(): void {
    this.#closed = true;
    for (const connection of this.#idle.splice(0)) connection.destroy();
    for (const pending of this.#waiting.splice(0)) pending.reject(new HttpConnectionError(`the connection pool to ${this.#url.host} is closed`, "ECONNRESET"));
  }

  #dispatch(): void {
    while (this.#waiting.length > 0) {
      let connection = this.#takeIdle();
      if (!connection) {
        if (this.#open >= this.#options.maxSockets) return;
        connection = this.#connect();
      }
      const pending = this.#waiting.shift();
      if (pending) connection.start(pending);
    }
  }

  #takeIdle(): Connection | undefined {
    const now = Date.now();
    for (let connection = this.#idle.pop(); connection; connection = this.#idle.pop()) {
      if (connection.reusable(now)) return connection;
      connection.destroy();
    }
    return undefined;
  }

  #connect(): Connection {
    this.#open += 1;
    const port = Number(this.#url.port) || (this.#url.protocol === "https:" ? 443 : 80);
    const host = this.#url.hostname.replace(/^\[(.*)\]$/, "$1");
    let socket: net.Socket;
    // A read's bytes are handled before the next read into the same buffer; true: go on reading.
    const onread: net.OnReadOpts = {
      buffer: READ_BUFFER,
      callback: (bytes) => {
        connection.read(READ_BUFFER, bytes);
        return true;
      },
    };
    if (this.#url.protocol === "https:") {
      // tls.connect takes onread as net.connect does (Node's documentation); its typings do not name it.
      const options: tls.ConnectionOptions & { onread: net.OnReadOpts } = {
        host,
        port,
        onread,
        ALPNProtocols: ["http/1.1"],
        ...(net.isIP(host) ? {} : { servername: host }),
        ...(this.#options.ca !== undefined ? { ca: this.#options.ca } : {}),
        ...(this.#tlsSession ? { session: this.#tlsSession } : {}),
      };
      const secure = tls.connect(options);
      secure.on("session", (session: Buffer) => (this.#tlsSession = session));
      socket = secure;
    } else socket = net.connect({ host, port, onread });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 1_000);
    const connection = new Connection(socket, this.#url.host, this.#options.timeoutMs, this.#options.minimumTransfer, {
      idle: (connection) => {
        if (this.#closed) connection.destroy();
        else this.#idle.push(connection);
        this.#dispatch();
      },
      gone: (connection) => {
        this.#open -= 1;
        const at = this.#idle.indexOf(connection);
        if (at >= 0) this.#idle.splice(at, 1);
        this.#dispatch();
      },
    });
    return connection;
  }
}

interface ConnectionEvents {
  idle(connection: Connection): void;
  gone(connection: Connection): void;
}

/** One socket and the answer being read on it. */
class Connection {
  readonly #socket: net.Socket;
  readonly #events: ConnectionEvents;
  #pending: Pending | undefined;
  #parser: AnswerParser | undefined;
  #idleSince = 0;
  #keepAliveMs = DEFAULT_IDLE_MS;
  #gone = false;
  readonly #host: string;
  readonly #minimumTransfer: MinimumTransfer | undefined;
  /** Checks minimumTransfer while a request is on the connection; cleared when its answer ends. */
  #watch: NodeJS.Timeout | undefined;

  constructor(socket: net.Socket, host: string, timeoutMs: number, minimumTransfer: MinimumTransfer | undefined, events: ConnectionEvents) {
    this.#socket = socket;
    this.#events = events;
    this.#host = host;
    this.#minimumTransfer = minimumTransfer;
    socket.setTimeout(timeoutMs);
    socket.on("timeout", () => this.#fail(new HttpConnectionError(`no answer from ${host} in ${timeoutMs / 1000} s`, "ETIMEDOUT")));
    socket.on("error", (error: NodeJS.ErrnoException) => this.#fail(new HttpConnectionError(error.message, error.code ?? "ECONNRESET", { cause: error })));
    socket.on("end", () => this.#end());
    socket.on("close", () => this.#fail(new HttpConnectionError("socket hang up", "ECONNRESET")));
  }

  reusable(now: number): boolean {
    return !this.#gone && now - this.#idleSince < this.#keepAliveMs;
  }

  start(pending: Pending): void {
    this.#pending = pending;
    this.#parser = new AnswerParser(pending.method === "HEAD", pending.maxBodyBytes);
    const socket = this.#socket;
    socket.ref();
    socket.cork();
    socket.write(pending.head, "latin1");
    if (pending.body.length > 0) socket.write(pending.body);
    socket.uncork();
    this.#watchTransfer(pending.method);
  }

  /** Fails the request when a window passes with fewer bytes sent and received than the pool's minimumTransfer. */
  #watchTransfer(method: string): void {
    const rule = this.#minimumTransfer;
    if (!rule) return;
    const socket = this.#socket;
    const moved = () => socket.bytesRead + socket.bytesWritten;
    let mark = moved();
    this.#watch = setInterval(() => {
      const count = moved() - mark;
      mark += count;
      if (count >= rule.bytes) return;
      this.#fail(
        new HttpSlowTransferError(
          `the connection to ${this.#host} moved ${count} bytes (sent and received) in ${rule.windowMs / 1000} s while a ${method} waited for its answer (at least ${rule.bytes} expected): an endpoint that slow would hold the command for hours; abandoned`,
        ),
      );
    }, rule.windowMs).unref();
  }

  #stopWatch(): void {
    clearInterval(this.#watch);
    this.#watch = undefined;
  }

  destroy(): void {
    this.#socket.destroy();
  }

  /** The socket read `length` bytes into `buffer`, which the next read overwrites: what is kept of them is copied. */
  read(buffer: Buffer, length: number): void {
    const chunk = buffer.subarray(0, length);
    const parser = this.#parser;
    const pending = this.#pending;
    if (!parser || !pending) {
      // A stray CRLF after the last answer on a kept-alive connection is not an answer (as Node ignores it).
      if (leadingLineEnds(chunk) === chunk.length) return;
      this.#fail(new HttpProtocolError("the server sent data with no request in flight"));
      return;
    }
    let answer: Http1Response | undefined;
    try {
      answer = parser.push(chunk);
    } catch (error) {
      this.#fail(error instanceof Error ? error : new HttpProtocolError(String(error)));
      return;
    }
    if (answer) this.#finish(pending, answer, parser.keepAlive);
  }

  #end(): void {
    const parser = this.#parser;
    const pending = this.#pending;
    // An answer with neither a length nor chunks ends with the connection.
    const answer = parser && pending ? parser.end() : undefined;
    if (answer && pending) this.#finish(pending, answer, false);
    else this.#fail(new HttpConnectionError("socket hang up", "ECONNRESET"));
  }

  #finish(pending: Pending, answer: Http1Response, keepAlive: boolean): void {
    this.#stopWatch();
    this.#pending = undefined;
    this.#parser = undefined;
    const hint = /timeout=(\d+)/.exec(String(answer.headers["keep-alive"] ?? ""))?.[1];
    if (hint !== undefined) this.#keepAliveMs = Math.max(0, Number(hint) * 1000 - KEEP_ALIVE_MARGIN_MS);
    if (keepAlive && this.#keepAliveMs > 0) {
      this.#idleSince = Date.now();
      // An idle connection does not keep the process alive (as Node's agent unrefs its free sockets).
      this.#socket.unref();
      this.#events.idle(this);
    } else {
      this.#gone = true;
      this.#socket.destroy();
      this.#events.gone(this);
    }
    pending.resolve(answer);
  }

  #fail(error: Error): void {
    this.#stopWatch();
    const pending = this.#pending;
    this.#pending = undefined;
    this.#parser = undefined;
    if (!this.#gone) {
      this.#gone = true;
      this.#socket.destroy();
      this.#events.gone(this);
    }
    pending?.reject(error);
  }
}

/** An HTTP token (RFC 9110 5.6.2): what a header name is made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** How many CR and LF bytes bytes starts with. */
function leadingLineEnds(bytes: Buffer): number {
  let at = 0;
  while (at < bytes.length && (bytes[at] === 0x0d || bytes[at] === 0x0a)) at++;
  return at;
}

/** Whether bytes[0, end) holds an LF not preceded by CR. */
function bareLineFeed(bytes: Buffer, end: number): boolean {
  for (let at = bytes.indexOf(0x0a); at >= 0 && at < end; at = bytes.indexOf(0x0a, at + 1)) if (at === 0 || bytes[at - 1] !== 0x0d) return true;
  return false;
}

/**
 * Reads one HTTP/1.x answer: its head, then a body by content-length, by chunks, or to the end of the connection.
 * The pieces pushed are views of the socket's read buffer, valid only during push(): what it keeps, it copies.
 */
class AnswerParser {
  readonly #headRequest: boolean;
  #maxBodyBytes: number;
  #bodyBytes = 0;
  #buffered: Buffer = Buffer.alloc(0);
  #status = 0;
  #headers: IncomingHttpHeaders = {};
  #mode: "head" | "length" | "chunk-size" | "chunk-data" | "chunk-end" | "trailers" | "to-end" = "head";
  #remaining = 0;
  /** A bounded request's 2xx body by content-length (the bound up to PREALLOCATED_BODY_BYTES), filled as it comes; else the body's pieces (copies) in #body. */
  #whole: Buffer | undefined;
  readonly #body: Buffer[] = [];
  /** An error's answer: its body is read up to MAX_ERROR_BODY_BYTES, then cut (the rest never read). */
  #errorBody = false;
  #cut = false;
  /** Bytes of trailer lines read (bounded as a head is). */
  #trailerBytes = 0;
  keepAlive = true;

  constructor(headRequest: boolean, maxBodyBytes = Number.POSITIVE_INFINITY) {
    this.#headRequest = headRequest;
    this.#maxBodyBytes = maxBodyBytes;
  }

  /**
   * Copies a piece of the body, refusing a body longer than the request allowed; true when an error's body reached
   * MAX_ERROR_BODY_BYTES: what is read so far is the answer, and the connection is not kept (the rest was not read).
   */
  #take(piece: Buffer): boolean {
    if (this.#errorBody && this.#bodyBytes + piece.length > MAX_ERROR_BODY_BYTES) {
      const keep = MAX_ERROR_BODY_BYTES - this.#bodyBytes;
      if (keep > 0) this.#body.push(Buffer.from(piece.subarray(0, keep)));
      this.#bodyBytes += keep;
      this.#cut = true;
      this.keepAlive = false;
      return true;
    }
    if (this.#bodyBytes + piece.length > this.#maxBodyBytes) throw new HttpAnswerTooLargeError(`the answer's body is longer than the ${this.#maxBodyBytes} bytes asked for`);
    if (this.#whole) piece.copy(this.#whole, this.#bodyBytes);
    else this.#body.push(Buffer.from(piece));
    this.#bodyBytes += piece.length;
    return false;
  }

  /** The whole answer once this chunk completes it; `chunk` is valid only during the call. */
  push(chunk: Buffer): Http1Response | undefined {
    const answer = this.#parse(chunk);
    // What is left unparsed (part of a head or a chunk-size line) waits for the next read: a copy, as the read buffer is reused.
    if (!answer && this.#buffered.length > 0 && this.#buffered.buffer === chunk.buffer) this.#buffered = Buffer.from(this.#buffered);
    return answer;
  }

  #parse(chunk: Buffer): Http1Response | undefined {
    this.#buffered = this.#buffered.length === 0 ? chunk : Buffer.concat([this.#buffered, chunk]);
    for (;;) {
      switch (this.#mode) {
        case "head": {
          // Empty lines before an answer are skipped (as Node does): a server's stray CRLF after the previous answer.
          this.#buffered = this.#buffered.subarray(leadingLineEnds(this.#buffered));
          const end = this.#buffered.indexOf("\r\n\r\n", 0, "latin1");
          // A line ended by LF alone would leave the head waiting for a CRLF CRLF that never comes: refused now.
          if (bareLineFeed(this.#buffered, end < 0 ? this.#buffered.length : end + 4)) throw new HttpProtocolError("an answer's head has a line ended by LF without CR");
          if (end < 0) {
            if (this.#buffered.length > MAX_HEAD_BYTES) throw new HttpProtocolError(`an answer's head is longer than ${MAX_HEAD_BYTES} bytes`);
            return undefined;
          }
          const head = this.#buffered.toString("latin1", 0, end);
          this.#buffered = this.#buffered.subarray(end + 4);
          if (this.#readHead(head)) return this.#answer();
          break;
        }
        case "length": {
          const take = Math.min(this.#remaining, this.#buffered.length);
          if (take > 0 && this.#take(this.#buffered.subarray(0, take))) return this.#answer();
          this.#buffered = this.#buffered.subarray(take);
          this.#remaining -= take;
          if (this.#remaining === 0) return this.#answer();
          return undefined;
        }
        case "chunk-size":
        case "chunk-end":
        case "trailers": {
          const end = this.#buffered.indexOf("\r\n", 0, "latin1");
          // Framing is not body: a chunk-size line (its extensions) and the trailers in all are bounded as a head is,
          // else an endless one would be read (and a line held) without end, under any body cap, while bytes move.
          if (end < 0) {
            if (this.#buffered.length > MAX_HEAD_BYTES) throw new HttpProtocolError(`an answer's chunk framing has a line longer than ${MAX_HEAD_BYTES} bytes`);
            return undefined;
          }
          const line = this.#buffered.toString("latin1", 0, end);
          this.#buffered = this.#buffered.subarray(end + 2);
          if (this.#mode === "chunk-end") {
            if (line !== "") throw new HttpProtocolError("a chunk of the answer does not end where its size says");
            this.#mode = "chunk-size";
          } else if (this.#mode === "trailers") {
            if (line === "") return this.#answer();
            this.#trailerBytes += end + 2;
            if (this.#trailerBytes > MAX_HEAD_BYTES) throw new HttpProtocolError(`an answer's trailers are longer than ${MAX_HEAD_BYTES} bytes`);
          } else {
            const size = /^([0-9a-fA-F]+)(;.*)?$/.exec(line.trim())?.[1];
            if (size === undefined) throw new HttpProtocolError(`an answer's chunk size is not hexadecimal: ${JSON.stringify(line.slice(0, 40))}`);
            this.#remaining = parseInt(size, 16);
            this.#mode = this.#remaining === 0 ? "trailers" : "chunk-data";
          }
          break;
        }
        case "chunk-data": {
          const take = Math.min(this.#remaining, this.#buffered.length);
          if (take > 0 && this.#take(this.#buffered.subarray(0, take))) return this.#answer();
          this.#buffered = this.#buffered.subarray(take);
          this.#remaining -= take;
          if (this.#remaining > 0) return undefined;
          this.#mode = "chunk-end";
          break;
        }
        case "to-end":
          if (this.#buffered.length > 0 && this.#take(this.#buffered)) return this.#answer();
          this.#buffered = Buffer.alloc(0);
          return undefined;
      }
    }
  }

  /** The answer when the connection ended and it is one that ends so (no length, no chunks). */
  end(): Http1Response | undefined {
    return this.#mode === "to-end" ? this.#answer() : undefined;
  }

  /** Reads the head; true when the answer has no body. */
  #readHead(head: string): boolean {
    const lines = head.split("\r\n");
    const statusLine = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/.exec(lines[0] ?? "");
    if (!statusLine) throw new HttpProtocolError(`the server's answer is not HTTP/1.x: ${JSON.stringify((lines[0] ?? "").slice(0, 40))}`);
    const status = Number(statusLine[2]);
    const headers: IncomingHttpHeaders = {};
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] ?? "";
      const colon = line.indexOf(":");
      if (colon <= 0) throw new HttpProtocolError(`an answer's header line has no name: ${JSON.stringify(line.slice(0, 40))}`);
      const rawName = line.slice(0, colon);
      // A name with spaces ("Content-Length : 2") or a folded line is refused, as Node refuses it: read otherwise, it smuggles.
      if (!TOKEN.test(rawName)) throw new HttpProtocolError(`an answer's header name is not a token: ${JSON.stringify(rawName.slice(0, 40))}`);
      const name = rawName.toLowerCase();
      // Only SP and HTAB surround a value (RFC 9110 5.5); other bytes are the value's.
      const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
      const known = headers[name];
      if (name === "set-cookie") headers["set-cookie"] = [...(headers["set-cookie"] ?? []), value];
      else if (known === undefined) headers[name] = value;
      else if (!FIRST_ONLY.has(name)) headers[name] = `${String(known)}, ${value}`;
    }
    // 1xx answers (100 Continue) come before the real one.
    if (status < 200) return false;
    this.#status = status;
    this.#headers = headers;
    // An error's body is read for its code whatever the request's bound, up to MAX_ERROR_BODY_BYTES (#take).
    if (status >= 300) {
      this.#maxBodyBytes = Number.POSITIVE_INFINITY;
      this.#errorBody = true;
    }
    const connection = String(headers.connection ?? "").toLowerCase();
    this.keepAlive = statusLine[1] === "1" ? !connection.includes("close") : connection.includes("keep-alive");
    if (headers["transfer-encoding"] !== undefined && headers["content-length"] !== undefined) {
      throw new HttpProtocolError("an answer has both transfer-encoding and content-length (refused, as Node refuses it)");
    }
    if (this.#headRequest || status === 204 || status === 304) return true;
    if (String(headers["transfer-encoding"] ?? "").toLowerCase().includes("chunked")) {
      this.#mode = "chunk-size";
      return false;
    }
    const length = headers["content-length"];
    if (length === undefined) {
      this.#mode = "to-end";
      this.keepAlive = false;
      return false;
    }
    if (!/^\d+$/.test(length)) throw new HttpProtocolError(`an answer's content-length is not a number: ${JSON.stringify(length)}`);
    this.#remaining = Number(length);
    if (this.#remaining > this.#maxBodyBytes) throw new HttpAnswerTooLargeError(`the answer's body of ${length} bytes is longer than the ${this.#maxBodyBytes} bytes asked for`);
    // Made before any body byte comes only where the caller bounded the body and the answer is a success (the restore's
    // ranged reads): an error's body is small, and a length an unbounded request is told could be anything (a server
    // sending heads of 16 MiB and little else would cost 16 MiB a socket). Others are gathered as their bytes come.
    if (status < 300 && this.#maxBodyBytes <= PREALLOCATED_BODY_BYTES) this.#whole = bodyBuffer(this.#remaining);
    this.#mode = "length";
    return this.#remaining === 0;
  }

  #answer(): Http1Response {
    // A stray CRLF after the answer is not a second answer (Node ignores it too). A cut body's rest is not read at all.
    this.#buffered = this.#cut ? Buffer.alloc(0) : this.#buffered.subarray(leadingLineEnds(this.#buffered));
    if (this.#buffered.length > 0) throw new HttpProtocolError("the server sent more than the answer to the one request in flight");
    const chunks = this.#whole ? [this.#whole] : this.#body;
    let body: Buffer | undefined;
    return {
      status: this.#status,
      headers: this.#headers,
      chunks,
      ...(this.#cut ? { cut: true as const } : {}),
      get body() {
        body ??= chunks.length === 1 ? (chunks[0] ?? Buffer.alloc(0)) : Buffer.concat(chunks);
        return body;
      },
    };
  }
}
