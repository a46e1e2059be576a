// `tidemark task` against a stopped (SIGSTOP) agent printed AgentNotAnsweringError
// and then never exited: answering() half-closed its connection (end()) and
// waited for the agent's end, which a stopped process never sends, so the open
// socket kept the command's process alive. Every way a command asks the control
// socket is run here in a child process against a listener that accepts and
// never reads, answers or closes (what the kernel does for a stopped process):
// each child must exit by itself, having said its answer. The children are
// killed after a bound far above any answer's time, only so a hang fails the test.

import { createServer, type Server, type Socket } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { callControl, controlSocketPath, startControlServer } from "../../agent/control.ts";
import { runProcess } from "../support/cli.ts";
import { tempDir } from "../support/tree.ts";

const CONTROL = fileURLToPath(new URL("../../agent/control.ts", import.meta.url));
const STARTING = fileURLToPath(new URL("../../agent/starting-agent.ts", import.meta.url));
const PRESENCE = fileURLToPath(new URL("../../agent/agent-presence.ts", import.meta.url));
const HANG_BOUND_MS = 20_000;

let dir: ReturnType<typeof tempDir> | undefined;
let server: Server | undefined;
const accepted: Socket[] = [];

afterEach(async () => {
  for (const socket of accepted.splice(0)) socket.destroy();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  server = undefined;
  dir?.remove();
  dir = undefined;
});

/** A control socket on a fresh state folder whose connections get `onConnection`, and are never closed by it. */
async function stoppedAgent(onConnection: (socket: Socket) => void = () => {}): Promise<{ stateDir: string; path: string }> {
  dir = tempDir("tidemark-stopped-");
  const path = controlSocketPath(dir.path);
  // allowHalfOpen: the client's end is not answered by one of ours, as a stopped process sends none.
  const listener = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (socket) => {
    accepted.push(socket);
    socket.on("error", () => {});
    onConnection(socket);
  });
  server = listener;
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  return { stateDir: dir.path, path };
}

/** Runs `body` (module code, top-level await allowed) in a child process; its output, and its exit code (null: killed). */
async function inChild(body: string) {
  return runProcess(process.execPath, ["--input-type=module", "-e", body], { timeoutMs: HANG_BOUND_MS });
}

it("answering(): says the socket answers, and the process exits though the agent never closes the connection", async () => {
  const { path } = await stoppedAgent();
  const result = await inChild(`import { answering } from ${JSON.stringify(CONTROL)}; console.log("answering", await answering(${JSON.stringify(path)}));`);
  expect(result.stdout).toContain("answering true");
  expect(result.code).toBe(0);
});

it("startingAgentAnswers() (task, verify, mirror, prune before their request) exits too", async () => {
  const { stateDir } = await stoppedAgent();
  const result = await inChild(`import { startingAgentAnswers } from ${JSON.stringify(STARTING)}; console.log("answers", await startingAgentAnswers(${JSON.stringify(stateDir)}));`);
  expect(result.stdout).toContain("answers true");
  expect(result.code).toBe(0);
});

it("agentPresence() (status) names the agent as not answering and exits", async () => {
  const { stateDir } = await stoppedAgent();
  const result = await inChild(
    `import { agentPresence } from ${JSON.stringify(PRESENCE)}; const p = await agentPresence(${JSON.stringify(stateDir)}, 300); console.log("running", p.running, "notAnswering" in p);`,
  );
  expect(result.stdout).toContain("running true true");
  expect(result.code).toBe(0);
});

it("callControl(): fails with AgentNotAnsweringError and the process exits", async () => {
  const { path } = await stoppedAgent();
  const result = await inChild(
    `import { callControl } from ${JSON.stringify(CONTROL)}; try { await callControl(${JSON.stringify(path)}, "/task", { set: "www" }, () => {}, 300); } catch (e) { console.log("failed", e.name); }`,
  );
  expect(result.stdout).toContain("failed AgentNotAnsweringError");
  expect(result.code).toBe(0);
});

it("callControl(): an agent that answers and then stops before closing the connection does not keep the command", async () => {
  const head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n";
  const line = `${JSON.stringify({ result: "done" })}\n`;
  const { path } = await stoppedAgent((socket) => {
    socket.resume();
    socket.once("data", () => socket.write(`${head}${Buffer.byteLength(line).toString(16)}\r\n${line}\r\n`));
  });
  const result = await inChild(`import { callControl } from ${JSON.stringify(CONTROL)}; console.log("result", await callControl(${JSON.stringify(path)}, "/task", {}));`);
  expect(result.stdout).toContain("result done");
  expect(result.code).toBe(0);
});

it("callControl(): an agent killed in the middle of its answer fails the request (it was left unsettled: the command ended saying nothing)", async () => {
  const head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n";
  const line = `${JSON.stringify({ progress: { step: 1 } })}\n`;
  const { path } = await stoppedAgent((socket) => {
    socket.resume();
    socket.once("data", () => socket.write(`${head}${Buffer.byteLength(line).toString(16)}\r\n${line}\r\n`, () => setTimeout(() => socket.destroy(), 50)));
  });
  const result = await inChild(
    `import { callControl } from ${JSON.stringify(CONTROL)}; try { await callControl(${JSON.stringify(path)}, "/task", {}); } catch (e) { console.log("failed", e.name, e.message); }`,
  );
  expect(result.stdout).toContain("failed ControlError the agent closed the connection without an answer");
  expect(result.code).toBe(0);
});

it("a stale socket path (nothing listens) is not answering", async () => {
  dir = tempDir("tidemark-stopped-");
  const result = await inChild(`import { answering } from ${JSON.stringify(CONTROL)}; console.log("answering", await answering(${JSON.stringify(join(dir.path, "none.sock"))}));`);
  expect(result.stdout).toContain("answering false");
  expect(result.code).toBe(0);
});

it("callControl(): an agent that took the request and then falls silent (stopped mid-operation) fails it, and the process exits", async () => {
  // The head says the agent sends a heartbeat every 50 ms; then nothing comes.
  const head = "HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\nx-tidemark-heartbeat-ms: 50\r\ntransfer-encoding: chunked\r\n\r\n";
  const { path } = await stoppedAgent((socket) => {
    socket.resume();
    socket.once("data", () => socket.write(head));
  });
  const result = await inChild(
    `import { callControl } from ${JSON.stringify(CONTROL)}; try { await callControl(${JSON.stringify(path)}, "/task", {}, () => {}, 300); } catch (e) { console.log("failed", e.name, e.message); }`,
  );
  expect(result.stdout).toMatch(/failed AgentNotAnsweringError the agent on .* took the request, then sent nothing for 0\.3 s: it is stopped or hung/);
  expect(result.code).toBe(0);
});

it("callControl(): an operation far longer than the silence allowed goes on while the agent's heartbeats come", async () => {
  dir = tempDir("tidemark-stopped-");
  const path = controlSocketPath(dir.path);
  const agent = await startControlServer(path, { "/slow": () => new Promise((resolve) => setTimeout(() => resolve("done"), 1_500)) }, { heartbeatMs: 20 });
  try {
    // Silence allowed: max(300 ms, 6 heartbeats = 120 ms); the operation takes 1.5 s.
    expect(await callControl(path, "/slow", {}, () => {}, 300)).toBe("done");
  } finally {
    await agent.close();
  }
});
