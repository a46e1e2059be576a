// The agent's heartbeat on the control socket never writes into an answer that ended: a caller that stops reading (a
// CLI suspended with Ctrl-Z during a mirror) leaves the answer queued, and a tick then must not end the agent.

import { connect } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, expect, it } from "vitest";
import { callControl, controlSocketPath, startControlServer, type ControlServer } from "../../agent/control.ts";
import { tempDir } from "../support/tree.ts";

const dirs: { remove(): void }[] = [];
let agent: ControlServer | undefined;
afterEach(async () => {
  await agent?.close();
  agent = undefined;
  for (const dir of dirs.splice(0)) dir.remove();
});

it("keeps serving after a caller that did not read while the answer ended (no write after the end)", async () => {
  const dir = tempDir();
  dirs.push(dir);
  const path = controlSocketPath(dir.path);
  const errors: unknown[] = [];
  const onError = (error: unknown) => errors.push(error);
  process.on("uncaughtException", onError);
  try {
    agent = await startControlServer(
      path,
      {
        // Enough progress and result to fill the socket's buffers while the caller does not read.
        "/mirror": async (_body, progress) => {
          for (let i = 0; i < 20_000; i++) progress({ folder: `folder-${i}/${"x".repeat(40)}` });
          return { report: "r".repeat(1_000_000) };
        },
        "/task": async () => ({ ok: true }),
      },
      { heartbeatMs: 10 },
    );
    const socket = connect(path);
    await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
    const body = "{}";
    socket.write(`POST /mirror HTTP/1.1\r\nHost: agent\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    // The caller is suspended: nothing read while the route ends and many heartbeat ticks pass.
    socket.pause();
    await sleep(500);
    let received = 0;
    socket.on("data", (chunk: Buffer) => (received += chunk.length));
    socket.resume();
    await new Promise<void>((resolve) => socket.once("close", () => resolve()));
    expect(received).toBeGreaterThan(1_000_000);
    expect(errors).toEqual([]);
    // The agent still answers.
    expect(await callControl(path, "/task", {})).toEqual({ ok: true });
  } finally {
    process.off("uncaughtException", onError);
  }
});
