// A command (`tidemark verify`, `mirror`, `task` ...) run with no agent starts
// one in its own process, does its work, sends what it journaled and stops.
// Such an agent must not take other commands' work: it stops when its own
// ends, cutting a second command's long request, and a second set's marker
// would stay unsent. Its lock names the command that took it (so no command
// waits for it to start), and its control socket refuses other requests with
// a code the client knows: those commands wait for it to end instead
// (command-agent-wait.ts).

import type { ControlHandler } from "./control.ts";

/** What the state lock of an agent that replicates (`tidemark run`, `tidemark local --source`) says. */
export const RUN_COMMAND = "tidemark run";

/** The code in a control error line that says the agent refused the request as CommandAgentBusyError. */
export const COMMAND_AGENT_BUSY = "command-agent-busy";

/** The state folder's agent was started by another command for its own work. */
export class CommandAgentBusyError extends Error {
  override name = "CommandAgentBusyError";
}

/** The routes an agent serves: all of them for `tidemark run`; for a command's own agent, each refuses, naming it. */
export function servedRoutes(command: string, routes: Record<string, ControlHandler>): Record<string, ControlHandler> {
  if (command === RUN_COMMAND) return routes;
  const refuse: ControlHandler = () =>
    Promise.reject(
      new CommandAgentBusyError(
        `the agent on this state folder was started by \`${command}\` (pid ${process.pid}) for its own work and stops once that is done; run this again then, or keep \`${RUN_COMMAND}\` running to serve every command`,
      ),
    );
  return Object.fromEntries(Object.keys(routes).map((route) => [route, refuse]));
}
