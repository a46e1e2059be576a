// `task --wait` gave up with "the target has not moved for 10 min" while the
// agent was uploading a large file journaled ahead of the marker (a slow or
// bandwidth-capped link): the target cannot move before that upload ends.
// The agent sending ahead of the marker now counts as busy, as a marker's
// running action does; not once its sends fail, the marker went, the journal
// left the marker's generation, or no agent runs.

import { spawn, type ChildProcess } from "node:child_process";
import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { taskResultKey } from "../../contract/layout.ts";
import type { TaskResult } from "../../contract/tasks.ts";
import { controlSocketPath, startControlServer, type ControlServer } from "../../agent/control.ts";
import { Journal } from "../../agent/journal.ts";
import { ownStart } from "../../agent/process-identity.ts";
import { sendingAhead, SENDING_FLOOR_BYTES_PER_SECOND } from "../../agent/sending-ahead.ts";
import { acquireStateLock, type StateLock } from "../../agent/state-lock.ts";
import { waitForTask } from "../../agent/task-results.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { tempDir } from "../support/tree.ts";

const SET = "db";
let dir: ReturnType<typeof tempDir> | undefined;
let lock: StateLock | undefined;
let server: ControlServer | undefined;
let agent: ChildProcess | undefined;

const LOCK_MODULE = fileURLToPath(new URL("../../agent/state-lock.ts", import.meta.url));
const CONTROL_MODULE = fileURLToPath(new URL("../../agent/control.ts", import.meta.url));

afterEach(async () => {
  await server?.close();
  server = undefined;
  if (agent) {
    const child = agent;
    agent = undefined;
    child.kill("SIGKILL");
    if (child.exitCode === null && child.signalCode === null) await new Promise((resolve) => child.once("exit", resolve));
  }
  lock?.release();
  lock = undefined;
  dir?.remove();
  dir = undefined;
});

/** A state folder whose journal holds a large put and a marker behind it, none sent. */
function journalWithMarkerBehindUpload(): { stateDir: string; marker: { seq: number; generation: string } } {
  dir = tempDir("tidemark-sending-ahead-");
  const journal = Journal.open(dir.path);
  try {
    journal.sets.register(SET);
    const [, seq] = journal.append(SET, [
      { op: "put", path: "big.db", size: 5, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { bytes: Buffer.from("large") } },
      { op: "task", id: "t1", fields: { action: "snapshot", timeoutSeconds: 300 } },
    ]);
    return { stateDir: dir.path, marker: { seq: seq ?? 0, generation: journal.sets.generation(SET).id } };
  } finally {
    journal.close();
  }
}

/** This process as the running agent: it holds the state lock and answers on its control socket. */
async function runningAgent(stateDir: string): Promise<void> {
  lock = acquireStateLock(stateDir, "tidemark run");
  server = await startControlServer(controlSocketPath(stateDir), {});
}

/** A large upload of the set going on in this process, named in the journal as the sender names it. */
function largeUpload(journal: Journal, attempt: string): void {
  const started = ownStart();
  journal.uploads.begin(SET, attempt, { key: `staged/${attempt}`, seq: 1, what: "big.db", size: 1 << 30, since: new Date().toISOString(), pid: process.pid, host: hostname(), ...(started !== undefined ? { started } : {}) });
}

it("is busy while a running agent that answers moves ahead of the marker and its sends do not fail", async () => {
  const { stateDir, marker } = journalWithMarkerBehindUpload();
  const busy = sendingAhead(stateDir, SET, marker);
  // No agent runs: nothing is being sent (the wait's unsent check says so at once).
  expect(await busy()).toBe(false);
  // A process holds the lock but never answers (hung before its socket listens): it sends nothing, however the journal moves.
  lock = acquireStateLock(stateDir, "tidemark run");
  const moving = Journal.open(stateDir);
  largeUpload(moving, "a0");
  moving.uploads.progress(SET, "staged/a0", "a0", 1024);
  moving.uploads.end(SET, "staged/a0", "a0");
  moving.close();
  expect(await busy()).toBe(false);
  server = await startControlServer(controlSocketPath(stateDir), {});
  // Running, but nothing moved since the wait began.
  expect(await busy()).toBe(false);
  // Another generation's seqs say nothing of this marker.
  expect(await sendingAhead(stateDir, SET, { ...marker, generation: "other" })()).toBe(false);

  const journal = Journal.open(stateDir);
  try {
    // A large upload ahead of the marker began, then stored more bytes: moving.
    largeUpload(journal, "a1");
    journal.uploads.progress(SET, "staged/a1", "a1", 1024);
    expect(await busy()).toBe(true);
    journal.uploads.progress(SET, "staged/a1", "a1", 2048);
    expect(await busy()).toBe(true);
    // Stuck without an error: not moving since the last check.
    expect(await busy()).toBe(false);
    journal.uploads.progress(SET, "staged/a1", "a1", 4096);
    journal.sets.recordSendError(SET, "connect ECONNREFUSED 127.0.0.1:4566");
    expect(await busy()).toBe(false);
    journal.sets.recordSendError(SET, null);
    journal.uploads.end(SET, "staged/a1", "a1");
    // Records before the marker sent: moving.
    journal.markSent(SET, marker.seq - 1, 100);
    expect(await busy()).toBe(true);
    journal.markSent(SET, marker.seq, 100);
    expect(await busy()).toBe(false);
  } finally {
    journal.close();
  }
});

it("stops counting as busy once the backlog would have gone at the floor rate, plus ten minutes", async () => {
  const { stateDir, marker } = journalWithMarkerBehindUpload();
  await runningAgent(stateDir);
  const journal = Journal.open(stateDir);
  try {
    const backlogBytes = journal.sets.counters(SET).backlogBytes;
    let now = 1_000_000;
    const busy = sendingAhead(stateDir, SET, marker, { now: () => now });
    largeUpload(journal, "a1");
    let done = 0;
    const progress = () => journal.uploads.progress(SET, "staged/a1", "a1", (done += 1024));
    progress();
    expect(await busy()).toBe(true);
    const budgetMs = 10 * 60_000 + (backlogBytes / SENDING_FLOOR_BYTES_PER_SECOND) * 1000;
    now += budgetMs - 1;
    progress();
    expect(await busy()).toBe(true);
    now += 1;
    progress();
    // A sender that moves too slowly to ever finish: the wait's stall limit applies again.
    expect(await busy()).toBe(false);
  } finally {
    journal.close();
  }
});

it("does not count a SIGSTOPped agent as busy: the wait gives up", async () => {
  const { stateDir, marker } = journalWithMarkerBehindUpload();
  // The agent: another process holding the lock and listening on the control socket.
  const script = `import { acquireStateLock } from ${JSON.stringify(LOCK_MODULE)}; const { startControlServer, controlSocketPath } = await import(${JSON.stringify(CONTROL_MODULE)}); acquireStateLock(${JSON.stringify(stateDir)}, "tidemark run"); await startControlServer(controlSocketPath(${JSON.stringify(stateDir)}), {}); process.stdout.write("listening\\n"); setInterval(() => {}, 1000);`;
  agent = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const child = agent;
  await new Promise<void>((resolve, reject) => {
    child.stdout?.on("data", (chunk: Buffer) => chunk.toString().includes("listening") && resolve());
    child.once("exit", (code) => reject(new Error(`the stand-in agent exited with ${code}`)));
  });
  // Waiting 10 s for the answer it gets (a loaded machine may not run the stand-in within 0.3 s), 0.3 s for the one
  // it does not; both from the same start.
  const busy = sendingAhead(stateDir, SET, marker, { answerTimeoutMs: 10_000 });
  const busyOnceStopped = sendingAhead(stateDir, SET, marker, { answerTimeoutMs: 300 });
  const journal = Journal.open(stateDir);
  try {
    largeUpload(journal, "a1");
    journal.uploads.progress(SET, "staged/a1", "a1", 1024);
    // It answers and the journal moved: busy.
    expect(await busy()).toBe(true);
    child.kill("SIGSTOP");
    journal.uploads.progress(SET, "staged/a1", "a1", 2048);
    // Its process and lock are there, its socket takes the connection, and it answers nothing.
    expect(await busyOnceStopped()).toBe(false);
    const store = new MemoryStore();
    const stopped = sendingAhead(stateDir, SET, marker, { answerTimeoutMs: 300 });
    journal.uploads.progress(SET, "staged/a1", "a1", 4096);
    await expect(waitForTask(store, SET, "t1", { seq: marker.seq, stallMs: 50, pollMs: 10, busy: stopped })).rejects.toThrow(/the target has not moved/);
  } finally {
    journal.close();
    child.kill("SIGCONT");
  }
});

it("keeps task --wait waiting past the stall limit while the agent sends ahead of the marker", async () => {
  const store = new MemoryStore();
  let sending = true;
  const waiting = waitForTask(store, SET, "t1", { seq: 2, stallMs: 50, pollMs: 10, busy: () => Promise.resolve(sending) });
  const outcome = waiting.then(
    () => "done",
    (error: unknown) => String(error),
  );
  await new Promise((resolve) => setTimeout(resolve, 300));
  // Still waiting, many stall limits later.
  expect(await Promise.race([outcome, Promise.resolve("waiting")])).toBe("waiting");
  // Not sending any more, but another marker's action holds the stream: still busy (the caller's check adds to it).
  const running: TaskResult = { id: "t0", set: SET, seq: 1, action: "snapshot", status: "running", timeoutSeconds: 900, reachedAt: new Date(0).toISOString(), attempts: 1, outputs: {} };
  await store.put(taskResultKey(SET, running.id), Buffer.from(JSON.stringify(running)), {});
  sending = false;
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(await Promise.race([outcome, Promise.resolve("waiting")])).toBe("waiting");
  await store.put(taskResultKey(SET, running.id), Buffer.from(JSON.stringify({ ...running, status: "succeeded" })), {});
  expect(await outcome).toMatch(/gave up waiting for task t1 \(seq 2\) of set "db": the target has not moved/);
});
