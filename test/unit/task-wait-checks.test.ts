// `tidemark task --wait` must use the busy check (the agent sending ahead of
// the marker), not only define it: the checks the command passes come from
// taskWaitChecks, and a wait given them outlasts the stall limit while the
// running agent moves, and gives up once it stops moving.

import { hostname } from "node:os";
import { afterEach, expect, it } from "vitest";
import { controlSocketPath, startControlServer, type ControlServer } from "../../agent/control.ts";
import { Journal } from "../../agent/journal.ts";
import { ownStart } from "../../agent/process-identity.ts";
import { acquireStateLock, type StateLock } from "../../agent/state-lock.ts";
import { waitForTask } from "../../agent/task-results.ts";
import { taskWaitChecks } from "../../agent/task-wait-checks.ts";
import { MemoryStore } from "../../lambdas/store/memory-store.ts";
import { tempDir } from "../support/tree.ts";

const SET = "db";
let dir: ReturnType<typeof tempDir> | undefined;
let lock: StateLock | undefined;
let server: ControlServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
  lock?.release();
  lock = undefined;
  dir?.remove();
  dir = undefined;
});

it("keeps the wait past the stall limit while the running agent uploads ahead of the marker, and gives up once it stops moving", async () => {
  dir = tempDir("tidemark-task-wait-checks-");
  const journal = Journal.open(dir.path);
  let timer: NodeJS.Timeout | undefined;
  try {
    journal.sets.register(SET);
    const [, seq] = journal.append(SET, [
      { op: "put", path: "big.db", size: 5, mode: 0o644, mtimeNs: "1", sha256: "0".repeat(64), content: { bytes: Buffer.from("large") } },
      { op: "task", id: "t1", fields: { action: "snapshot", timeoutSeconds: 300 } },
    ]);
    const marker = { seq: seq ?? 0, generation: journal.sets.generation(SET).id };
    // This process is the running agent: it holds the lock, answers, and its large upload moves.
    lock = acquireStateLock(dir.path, "tidemark run");
    server = await startControlServer(controlSocketPath(dir.path), {});
    const started = ownStart();
    journal.uploads.begin(SET, "a1", { key: "staged/a1", seq: 1, what: "big.db", size: 1 << 30, since: new Date().toISOString(), pid: process.pid, host: hostname(), ...(started !== undefined ? { started } : {}) });
    let done = 0;
    timer = setInterval(() => journal.uploads.progress(SET, "staged/a1", "a1", (done += 1024)), 5);
    const checks = taskWaitChecks(new MemoryStore(), dir.path, SET, marker, undefined);
    const outcome = waitForTask(new MemoryStore(), SET, "t1", { seq: marker.seq, stallMs: 50, pollMs: 10, ...checks }).then(
      () => "done",
      (error: unknown) => String(error),
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Many stall limits later, still waiting: the agent moves.
    expect(await Promise.race([outcome, Promise.resolve("waiting")])).toBe("waiting");
    clearInterval(timer);
    expect(await outcome).toMatch(/gave up waiting for task t1 \(seq 2\) of set "db": the target has not moved/);
  } finally {
    clearInterval(timer);
    journal.close();
  }
});
