// An agent that is stopped (SIGSTOP) or hung still has its control socket
// accept connections: `task`, `verify`, `mirror` and `prune` waited on it
// forever with no output. A request now fails when the agent does not take
// it in time, and a running agent takes it at once (the answer's head goes
// out before the operation's first progress event, however late that is).

import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { AgentNotAnsweringError, callControl, startControlServer, type ControlServer } from "../../agent/control.ts";
import { tempDir } from "../support/tree.ts";

const dir = tempDir();
let stand: Server | undefined;
let agent: ControlServer | undefined;

afterEach(async () => {
  stand?.closeAllConnections();
  await new Promise((resolve) => (stand ? stand.close(resolve) : resolve(undefined)));
  await agent?.close();
  stand = undefined;
  agent = undefined;
});

it("fails, naming the agent as stopped or hung, when the agent accepts the connection and never takes the request", async () => {
  const path = join(dir.path, "frozen.sock");
  // A process that cannot run accepts connections all the same (the kernel's backlog), and answers nothing.
  const frozen = createServer(() => {});
  stand = frozen;
  await new Promise<void>((resolve) => frozen.listen(path, resolve));
  const call = callControl(path, "/task", { set: "www" }, () => {}, 300);
  await expect(call).rejects.toBeInstanceOf(AgentNotAnsweringError);
  await expect(call).rejects.toThrow(/did not take it in 0\.3 s: it is stopped or hung .*, or older than this CLI .*restart it/);
});

it("waits as long as the operation takes once the agent took the request", async () => {
  const path = join(dir.path, "agent.sock");
  // Taken within 1 s (its head goes out at once; the margin is for a loaded machine, where 0.3 s could pass before
  // this process ran again), done after twice that.
  agent = await startControlServer(path, { "/slow": () => new Promise((resolve) => setTimeout(() => resolve("done"), 2_000)) });
  expect(await callControl(path, "/slow", {}, () => {}, 1_000)).toBe("done");
});
