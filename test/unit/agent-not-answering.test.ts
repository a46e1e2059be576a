// A SIGSTOPped (or hung) agent still holds its state lock and its control
// socket still accepts connections: `tidemark status` said "in sync" while it
// replicated nothing. Status now asks it something; no answer in time is the
// problem `agent-not-answering`. A stand-in plays the frozen agent: this
// process holds the lock, and a server on the socket answers nothing.

import { createServer, type Server } from "node:http";
import { afterEach, expect, it } from "vitest";
import { agentPresence } from "../../agent/agent-presence.ts";
import { controlSocketPath, startControlServer, type ControlServer } from "../../agent/control.ts";
import type { SetCounters } from "../../agent/journal.ts";
import { findProblems, type SetFacts } from "../../agent/set-health.ts";
import { initialStatus } from "../../contract/layout.ts";
import { acquireStateLock } from "../../agent/state-lock.ts";
import { tempDir } from "../support/tree.ts";

let frozen: Server | undefined;
let agent: ControlServer | undefined;
let release: (() => void) | undefined;
const dirs: ReturnType<typeof tempDir>[] = [];

afterEach(async () => {
  frozen?.closeAllConnections();
  await new Promise((resolve) => (frozen ? frozen.close(resolve) : resolve(undefined)));
  await agent?.close();
  release?.();
  for (const dir of dirs.splice(0)) dir.remove();
  frozen = agent = release = undefined;
});

function stateDir(): string {
  const dir = tempDir();
  dirs.push(dir);
  const lock = acquireStateLock(dir.path, "tidemark run");
  release = () => lock.release();
  return dir.path;
}

it("names an agent whose control socket accepts connections and answers nothing", async () => {
  const dir = stateDir();
  const server = createServer(() => {});
  frozen = server;
  await new Promise<void>((resolve) => server.listen(controlSocketPath(dir), resolve));
  const presence = await agentPresence(dir, 200);
  expect(presence).toMatchObject({ running: true, notAnswering: expect.stringMatching(/answered nothing in 0\.2 s: it is stopped \(SIGSTOP\) or hung/) });
  const counters: SetCounters = { nextSeq: 11, sentSeq: 10, backlogRecords: 0, backlogBytes: 0, messagesSent: 3, bytesSent: 100, lastSendError: null, overflowed: false, watcherProblem: null };
  const facts: SetFacts = {
    set: "s",
    counters,
    generation: { id: "g1", sinceSeq: 0 },
    target: { status: { ...initialStatus("s"), lastSeq: 10, generation: "g1" } },
    now: new Date(),
    agent: presence,
  };
  // In sync by every other measure: only the frozen agent is wrong.
  expect(findProblems(facts).map((p) => p.kind)).toEqual(["agent-not-answering"]);
});

it("takes any answer of a running agent, and an agent still starting (no socket yet), as answering", async () => {
  const dir = stateDir();
  expect(await agentPresence(dir, 200)).toEqual({ running: true });
  agent = await startControlServer(controlSocketPath(dir), {});
  expect(await agentPresence(dir, 200)).toEqual({ running: true });
});
