// The agent a command (`tidemark verify` with no agent running) starts for
// itself stops once its own work is done: it must not take another
// command's request (cut off when it stops, or a marker left unsent).

import { expect, it } from "vitest";
import { CommandAgentBusyError, RUN_COMMAND, servedRoutes } from "../../agent/command-agent.ts";
import type { ControlHandler } from "../../agent/control.ts";

const routes: Record<string, ControlHandler> = { "/task": () => Promise.resolve({ queued: true }), "/verify": () => Promise.resolve({ verified: true }) };

it("serves every route for tidemark run", async () => {
  const served = servedRoutes(RUN_COMMAND, routes);
  expect(await served["/task"]?.({}, () => {})).toEqual({ queued: true });
});

it("refuses every route of a command's own agent, naming the command", async () => {
  const served = servedRoutes("tidemark verify", routes);
  expect(Object.keys(served)).toEqual(["/task", "/verify"]);
  for (const route of Object.values(served)) {
    const answer = route({ set: "db" }, () => {});
    await expect(answer).rejects.toThrow(CommandAgentBusyError);
    await expect(answer).rejects.toThrow(`started by \`tidemark verify\` (pid ${process.pid})`);
  }
});
