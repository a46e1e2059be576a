// The agent's control socket (DESIGN 1): a Unix socket in the state dir over
// which `tidemark mirror` / `verify` (and later `task`) ask the running agent
// to act, so one process owns the journal. Requests are JSON; answers are
// JSON lines: progress events, then one result or one error.

import { createHash } from "node:crypto";
import { existsSync, unlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import type { IncomingMessage, Server } from "node:http";
import { connect } from "node:net";
import { join } from "node:path";
import { COMMAND_AGENT_BUSY, CommandAgentBusyError } from "./command-agent.ts";
import { HeldWaitError, HeldWaitReportSchema, heldWaitErrorOf } from "./held-wait.ts";

// Not an ESM import of node:http, which loads Node's fetch (lambdas/target/http-settings.ts says why).
const { createServer, request } = process.getBuiltinModule("node:http");

export const CONTROL_SOCKET = "control.sock";

/** Unix socket paths are limited to about 107 bytes. */
const MAX_SOCKET_PATH = 100;

/** The socket of the agent on stateDir: inside it, or in the temp dir (named after it) when that path is too long. */
export function controlSocketPath(stateDir: string): string {
  const inside = join(stateDir, CONTROL_SOCKET);
  if (Buffer.byteLength(inside) <= MAX_SOCKET_PATH) return inside;
  return join(tmpdir(), `tidemark-${createHash("sha256").update(stateDir).digest("hex").slice(0, 16)}.sock`);
}

/** No agent answers on the socket: the caller may do the work itself. */
export class NoAgentError extends Error {
  override name = "NoAgentError";
}

/** The agent answered with an error. */
export class ControlError extends Error {
  override name = "ControlError";
}

/**
 * The agent's answer (a result, or an error's details) that JSON cannot carry (a BigInt, a cycle): the caller gets this
 * error instead, naming the route and why, where the answer was an unhandled rejection and the caller heard nothing.
 */
export class UnsendableAnswerError extends ControlError {
  override name = "UnsendableAnswerError";
}
const UNSENDABLE_ANSWER = "unsendable-answer";

/**
 * How long a request waits for the agent to take it (the answer's head, sent as soon as the request is read): an
 * agent that is stopped (SIGSTOP) or hung still has its socket accept connections, and `task`, `verify`, `mirror`
 * and `prune` waited on it forever with no output.
 */
export const CONTROL_ANSWER_TIMEOUT_MS = 60_000;

/**
 * While a request runs the agent sends an empty line this often, and says so in the answer's head (HEARTBEAT_HEADER):
 * a command then fails when nothing comes for HEARTBEATS_MISSED of them (at least its answer timeout), where it waited
 * forever on an agent stopped (SIGSTOP) or hung after it took the request. An empty line is skipped by every CLI, and
 * a CLI asking an agent older than this (no header) waits as before.
 */
export const HEARTBEAT_MS = 10_000;
const HEARTBEAT_HEADER = "x-tidemark-heartbeat-ms";
const HEARTBEATS_MISSED = 6;

/** The agent accepted the connection but did not take the request in time, or went silent after it took it. */
export class AgentNotAnsweringError extends ControlError {
  override name = "AgentNotAnsweringError";
}

export type ControlHandler = (body: unknown, progress: (event: unknown) => void) => Promise<unknown>;

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let text = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => {
      text += chunk;
      if (text.length > 1_000_000) req.destroy(new Error("request too large"));
    });
    req.on("end", () => {
      try {
        resolve(text === "" ? {} : JSON.parse(text));
      } catch {
        reject(new Error("request body is not JSON"));
      }
    });
    req.on("error", reject);
  });
}

/**
 * True when something accepts connections on the socket (an agent runs on its state dir). The connection is
 * destroyed, not half-closed: end() waited for the peer's own end, which a stopped (SIGSTOP) or hung agent never
 * sends, and the open socket kept the command's process alive after it had failed.
 */
export function answering(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

export interface ControlServer {
  readonly path: string;
  close(): Promise<void>;
}

export async function startControlServer(path: string, routes: Record<string, ControlHandler>, options: { heartbeatMs?: number } = {}): Promise<ControlServer> {
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  if (existsSync(path)) {
    if (await answering(path)) throw new ControlError(`another agent is running on this state dir (${path} answers)`);
    // Left by an agent that was killed: nobody listens on it.
    unlinkSync(path);
  }
  const server: Server = createServer((req, res) => {
    const route = routes[req.url ?? ""];
    if (req.method !== "POST" || !route) {
      res.writeHead(404, { "content-type": "application/json" }).end(`${JSON.stringify({ error: `no such request ${req.method} ${req.url}` })}\n`);
      return;
    }
    res.writeHead(200, { "content-type": "application/x-ndjson", [HEARTBEAT_HEADER]: String(heartbeatMs) });
    // At once: the caller knows this agent took the request, however long before its first progress event.
    res.flushHeaders();
    // Nothing is written once the answer ended or its caller went (a heartbeat's tick after the end, a progress event
    // of a caller that left): a write then would be an error no one handles, and it would end the agent.
    const open = () => !res.writableEnded && !res.destroyed;
    // A caller that stops reading (a CLI suspended with Ctrl-Z) would have the agent buffer every progress event for
    // as long as it runs: once the answer's buffer is full, only the latest one waits, sent when the caller reads again.
    let backedUp = false;
    let latest: string | undefined;
    const write = (line: string) => {
      if (res.write(line) || backedUp) return;
      backedUp = true;
      res.once("drain", () => {
        backedUp = false;
        const waiting = latest;
        latest = undefined;
        if (waiting !== undefined && open()) write(waiting);
      });
    };
    const heartbeat = setInterval(() => {
      // An answer still queued keeps the caller from falling silent, and a suspended caller reads no tick.
      if (open() && !backedUp) write("\n");
    }, heartbeatMs);
    const ended = () => clearInterval(heartbeat);
    res.once("close", ended);
    res.on("error", ended);
    const progress = (event: unknown) => {
      // Nothing to send once the answer ended or its caller left: not even serialised, so an event JSON cannot carry,
      // emitted then (from a timer, an emitter, outside the route's awaited chain), throws no uncaught exception.
      if (!open()) return;
      // Serialised here, so an event JSON cannot carry fails its route's call, not a later drain.
      const line = `${JSON.stringify({ progress: event })}\n`;
      if (backedUp) latest = line;
      else write(line);
    };
    // The result and errors always go, after the latest progress held back (the caller's view ends on it).
    const answer = (line: string) => {
      if (latest !== undefined && open()) res.write(latest);
      latest = undefined;
      res.end(line);
    };
    const answerLine = (message: () => unknown) => {
      try {
        return `${JSON.stringify(message())}\n`;
      } catch (error) {
        const why = error instanceof Error ? error.message : String(error);
        return `${JSON.stringify({ error: `the agent's answer to ${req.url} could not be sent as JSON (${why})`, code: UNSENDABLE_ANSWER })}\n`;
      }
    };
    readBody(req)
      .then((body) => route(body, progress))
      .finally(ended)
      .then(
        (result) => answer(answerLine(() => ({ result }))),
        (error: unknown) =>
          answer(
            answerLine(() => ({
              error: error instanceof Error ? error.message : String(error),
              ...(error instanceof HeldWaitError ? { heldWait: error.toJSON() } : {}),
              ...(error instanceof CommandAgentBusyError ? { code: COMMAND_AGENT_BUSY } : {}),
            })),
          ),
      );
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(path, () => resolve());
  });
  return {
    path,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Sends a request to the agent on the socket; resolves with its result, calling onProgress for each progress event. */
export function callControl(
  path: string,
  route: string,
  body: unknown,
  onProgress: (event: unknown) => void = () => {},
  answerTimeoutMs: number = CONTROL_ANSWER_TIMEOUT_MS,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    // agent: false: a fresh connection each time, never a pooled one to an agent that has since stopped.
    const req = request({ socketPath: path, path: route, method: "POST", agent: false, headers: { "content-type": "application/json" } }, (res) => {
      clearTimeout(untaken);
      let buffer = "";
      let settled = false;
      // An agent that sends heartbeats and then falls silent is stopped or hung: the command fails rather than wait on it.
      const beat = Number(res.headers[HEARTBEAT_HEADER]);
      const silentMs = Number.isFinite(beat) && beat > 0 ? Math.max(answerTimeoutMs, beat * HEARTBEATS_MISSED) : undefined;
      let silent: NodeJS.Timeout | undefined;
      const listen = () => {
        clearTimeout(silent);
        if (silentMs === undefined || settled) return;
        silent = setTimeout(() => {
          settled = true;
          reject(
            new AgentNotAnsweringError(
              `the agent on ${path} took the request, then sent nothing for ${silentMs / 1000} s: it is stopped or hung (its pid is in tidemark.lock in its state folder); should it go on, it may still carry the request out`,
            ),
          );
          req.destroy();
        }, silentMs);
      };
      listen();
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        listen();
        buffer += chunk;
        let newline = buffer.indexOf("\n");
        while (newline >= 0 && !settled) {
          const line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          newline = buffer.indexOf("\n");
          if (line === "") continue;
          const message = JSON.parse(line) as { progress?: unknown; result?: unknown; error?: string; heldWait?: unknown; code?: unknown };
          if ("progress" in message) onProgress(message.progress);
          else if ("error" in message) {
            settled = true;
            // A set held by another key's ownership is named as such, so a command can say it (and print it as JSON).
            const held = HeldWaitReportSchema.safeParse(message.heldWait);
            // Another command's own agent refused it: the caller waits for that agent to end (command-agent-wait.ts).
            if (message.code === COMMAND_AGENT_BUSY) reject(new CommandAgentBusyError(message.error ?? "the agent serves only its own command"));
            else if (message.code === UNSENDABLE_ANSWER) reject(new UnsendableAnswerError(message.error ?? "the agent's answer could not be sent as JSON"));
            else reject(held.success ? heldWaitErrorOf(held.data) : new ControlError(message.error ?? "the agent failed"));
          } else {
            settled = true;
            resolve(message.result);
          }
        }
        // The answer is in: the connection is closed here, not left open until the agent ends it (a stopped one never does).
        if (settled) req.destroy();
      });
      // "close", not "end": a response cut off (the agent killed mid-answer) ends with no "end", and the command waited
      // on a promise nothing would settle.
      res.on("close", () => {
        clearTimeout(silent);
        if (!settled) reject(new ControlError("the agent closed the connection without an answer"));
      });
    });
    const untaken = setTimeout(() => {
      req.destroy(
        new AgentNotAnsweringError(
          `the agent on ${path} accepted the request but did not take it in ${answerTimeoutMs / 1000} s: it is stopped or hung (its pid is in tidemark.lock in its state folder), or older than this CLI (one that answers only when done: restart it); should it go on, it may still carry the request out`,
        ),
      );
    }, answerTimeoutMs);
    req.on("error", (error: NodeJS.ErrnoException) => {
      clearTimeout(untaken);
      if (error.code === "ENOENT" || error.code === "ECONNREFUSED") reject(new NoAgentError(`no agent is running on ${path}`));
      else reject(error);
    });
    req.end(JSON.stringify(body));
  });
}
