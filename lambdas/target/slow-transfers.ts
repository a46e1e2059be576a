// An endpoint that answers one byte every few seconds never trips an idle
// timeout: `tidemark status`, `snapshots` and `timeline` sat on such an
// endpoint for hours (the headers alone, a byte each 2 s, took minutes). This
// guard abandons a connection that, while a request is on it, moves fewer
// than a minimum of bytes (sent and received) in a window; the request fails
// with SlowTransferError, which the SDK retries like a timeout. Only for
// clients whose requests always move bytes (the CLI's reads): S3 may pad a
// long copy's answer with a space now and then, which this would abandon.

import { subscribe } from "node:diagnostics_channel";
import type { Agent, IncomingMessage } from "node:http";
import { Socket } from "node:net";
import type { Duplex } from "node:stream";

import type { MinimumTransfer } from "../http1-pool.ts";

export type { MinimumTransfer };

// Through getBuiltinModule: the ESM import of node:http loads Node's fetch (see http-settings.ts).
const http = process.getBuiltinModule("node:http");

/** A connection moved too few bytes while a request was on it. `code` makes the SDK and the CLI take it for a timeout. */
export class SlowTransferError extends Error {
  override name = "SlowTransferError";
  readonly code = "ETIMEDOUT";
}

interface Watch {
  readonly where: string;
  mark: number;
  timer: NodeJS.Timeout | undefined;
  /** The answer being read on the connection: it fails with the error, not with Node's bare "aborted". */
  response: IncomingMessage | undefined;
  /** Starts the window anew for a request given the connection. */
  readonly begin: () => void;
}

/** Every guarded connection, whichever agent made it. */
const watches = new WeakMap<Duplex, Watch>();
let listening = false;

/**
 * Node publishes each answer's head on one channel: how a guarded connection learns the answer it carries; and each
 * request on another: a connection given to it (new, from the pool, or handed straight from a finished request to a
 * queued one, which passes neither keepSocketAlive nor reuseSocket) starts its window anew, the last answer forgotten.
 */
function listenForAnswers(): void {
  if (listening) return;
  listening = true;
  subscribe("http.client.request.start", (message) => {
    if (typeof message !== "object" || message === null || !("request" in message) || !(message.request instanceof http.ClientRequest)) return;
    // Node publishes the start once the request has its connection; else the connection is still to come.
    const { request } = message;
    if (request.socket) watches.get(request.socket)?.begin();
    else request.once("socket", (socket: Duplex) => watches.get(socket)?.begin());
  });
  subscribe("http.client.response.finish", (message) => {
    if (typeof message !== "object" || message === null || !("response" in message) || !(message.response instanceof http.IncomingMessage)) return;
    const watch = watches.get(message.response.socket);
    if (watch) watch.response = message.response;
  });
}

function moved(stream: Duplex): number {
  return stream instanceof Socket ? stream.bytesRead + stream.bytesWritten : 0;
}

/** Makes `agent` abandon any connection that moves less than `rule` while in use; returns the same agent. */
export function guardSlowTransfers<A extends Agent>(agent: A, rule: MinimumTransfer): A {
  listenForAnswers();
  const seconds = rule.windowMs / 1000;

  const pause = (stream: Duplex) => {
    const watch = watches.get(stream);
    if (watch?.timer) clearInterval(watch.timer);
    if (watch) {
      watch.timer = undefined;
      watch.response = undefined;
    }
  };
  const begin = (stream: Duplex) => {
    const watch = watches.get(stream);
    if (!watch) return;
    pause(stream);
    watch.mark = moved(stream);
    watch.timer = setInterval(() => {
      const now = moved(stream);
      const count = now - watch.mark;
      watch.mark = now;
      const response = watch.response;
      // Bytes waiting for the reader, or the whole answer in: the caller is the one not moving, not the endpoint.
      if (count >= rule.bytes || (response && (response.complete || response.readableLength > 0))) return;
      const error = new SlowTransferError(
        `${watch.where} moved ${count} bytes (sent and received) in ${seconds} s while a request waited on it (at least ${rule.bytes} expected): an endpoint that slow would hold the command for hours; abandoned`,
      );
      pause(stream);
      response?.destroy(error);
      stream.destroy(error);
    }, rule.windowMs).unref();
  };
  const watch = (stream: Duplex, where: string) => {
    if (watches.has(stream)) return;
    watches.set(stream, { where, mark: 0, timer: undefined, response: undefined, begin: () => begin(stream) });
    stream.once("close", () => pause(stream));
    begin(stream);
  };

  const create = agent.createConnection.bind(agent);
  const keepAlive = agent.keepSocketAlive.bind(agent);
  agent.createConnection = (options, callback) => {
    const where = `the connection to ${options.host ?? options.hostname ?? "the endpoint"}:${options.port ?? ""}`;
    // The callback may run before create returns (then `returned` is not known yet) or after.
    const seen: { returned?: Duplex; delivered?: Duplex } = {};
    const stream = create(options, (error, created) => {
      seen.delivered = created;
      // Through an https proxy, the connection returned is the one to the proxy and this one the tunnel inside
      // it: only the tunnel is paused and restarted with its requests, so only it is watched.
      if (created && seen.returned && created !== seen.returned) {
        pause(seen.returned);
        watches.delete(seen.returned);
      }
      if (created) watch(created, where);
      callback?.(error, created);
    });
    seen.returned = stream ?? undefined;
    if (stream && (seen.delivered === undefined || seen.delivered === stream)) watch(stream, where);
    return stream;
  };
  // Back in the pool between requests: an idle connection moves nothing, rightly.
  agent.keepSocketAlive = (stream) => {
    pause(stream);
    return keepAlive(stream);
  };
  return agent;
}
