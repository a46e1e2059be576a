// Shared by `tidemark verify` and `tidemark mirror`: ask the running agent
// over its control socket, or, when none runs, do the work in this process
// (the agent started, the operation run, what it journaled sent, stopped).

import type { AgentConfig } from "../config.ts";
import { callControl, controlSocketPath, NoAgentError } from "../control.ts";
import { HeldWaitError } from "../held-wait.ts";
import { SendsHeldError } from "../owner-hold.ts";
import type { OperationDeps, Progress } from "../operations.ts";
import { createProgressView } from "../progress.ts";
import { RUN_COMMAND } from "../command-agent.ts";
import { silentLogger } from "../log.ts";
import type { RunningAgent } from "../runtime.ts";
import { AgentStartTimeoutError, STARTING_AGENT_WAIT_MS, startingAgent, startingAgentAnswers } from "../starting-agent.ts";
import { lockedBy, lockOwner, StateLockedError, type LockOwner } from "../state-lock.ts";
import { UsageError } from "./command.ts";

/**
 * Another key owns the set, so this host's sends are held: what the operation journaled stays journaled (sent once
 * `tidemark adopt` moves the set here), said on stderr. Its outcome is still printed in the form asked for (a
 * marker queued; `--wait` then ends with why it is not reached); any other failure to send goes on.
 */
function heldSendsSaid(error: unknown): void {
  if (!(error instanceof SendsHeldError)) throw error;
  process.stderr.write(`tidemark: ${error.message}
`);
}

/** The one stderr line while a command waits for a starting agent. */
function saidOnce(stateDir: string): (owner: LockOwner) => void {
  let said = false;
  return (owner) => {
    if (said) return;
    said = true;
    process.stderr.write(`tidemark: waiting up to ${STARTING_AGENT_WAIT_MS / 1000} s for the agent starting on ${stateDir} (pid ${owner.pid}) to answer\n`);
  };
}

/** What the state lock of the agent a command starts for itself says took it (command-agent.ts). */
function commandOf(route: string): string {
  return `tidemark ${route === "/drill-report" ? "drill" : route.slice(1)}`;
}

/**
 * Before a command's own side effects (task's --quiesce stops a database): waits for an agent starting on the state
 * folder to answer, and refuses at once a lock the command could neither wait for nor take (another host's, another
 * command's). With no agent, the command starts its own later (operate).
 */
export async function agentReady(config: AgentConfig, quiet: boolean): Promise<void> {
  const answers = await startingAgentAnswers(config.stateDir, quiet ? {} : { onWait: saidOnce(config.stateDir) });
  const owner = lockOwner(config.stateDir);
  // Another command's own agent answers too, and refuses the request (command-agent.ts).
  if (owner !== undefined && (!answers || owner.command !== RUN_COMMAND)) throw lockedBy(config.stateDir, owner);
}

export function checkSet(config: AgentConfig, set: string | undefined, command: string): string {
  if (set === undefined) throw new UsageError(`name the set to ${command} (sets: ${config.sets.map((s) => s.name).join(", ")})`);
  if (!config.sets.some((s) => s.name === set)) throw new UsageError(`no set named "${set}" in ${config.file} (sets: ${config.sets.map((s) => s.name).join(", ")})`);
  return set;
}

export async function operate<T>(
  config: AgentConfig,
  route: string,
  request: { set: string } & Record<string, unknown>,
  inProcess: (deps: OperationDeps) => Promise<T>,
  options: {
    quiet: boolean;
    /**
     * What stays unsent when the final send finds the set held (`verify --repair`'s repairs, a mirror's changes), or
     * says it from the operation's result and the count of records left unsent: the command then fails with the
     * hold (HeldWaitError: exit 1, its JSON under --json) instead of printing success. Without it the hold is said on
     * stderr only (a queued marker, whose wait reports the hold itself).
     */
    unsentWhenHeld?: string | ((result: T, unsent: number) => string);
  },
): Promise<T> {
  const view = options.quiet ? undefined : createProgressView({ tty: process.stderr.isTTY === true, write: (text) => process.stderr.write(text) });
  const onProgress = (progress: Progress) => view?.update(progress);
  // One deadline for every wait below: an agent that answers and then stops (a crash loop) cannot keep the command.
  const deadline = Date.now() + STARTING_AGENT_WAIT_MS;
  const onWait = options.quiet ? undefined : saidOnce(config.stateDir);
  let lockedAgain = false;
  let running: RunningAgent;
  for (let pass = 0; ; pass += 1) {
    if (pass > 0 && Date.now() >= deadline) {
      view?.done();
      throw new AgentStartTimeoutError(`the agent on ${config.stateDir} kept stopping before it took the request (its control socket answered, then was gone); see \`tidemark status\``);
    }
    try {
      const result = (await callControl(controlSocketPath(config.stateDir), route, request, (event) => onProgress(event as Progress))) as T;
      view?.done();
      return result;
    } catch (error) {
      if (!(error instanceof NoAgentError)) {
        view?.done();
        throw error;
      }
    }
    try {
      // An agent still starting holds the state lock before its socket listens: it is the one to ask, not a second agent.
      if (await startingAgentAnswers(config.stateDir, { deadline, ...(onWait ? { onWait } : {}) })) continue;
      // Loaded only now: with an agent running, a command never pays for the SDK, the watcher and the journal.
      const { startAgent } = await import("../runtime.ts");
      running = await startAgent(config, silentLogger, { scheduleDrills: false, command: commandOf(route) });
      break;
    } catch (error) {
      // The lock was free, then an agent starting (a service restarted) took it first: wait for that one, once.
      if (error instanceof StateLockedError && !lockedAgain && startingAgent(lockOwner(config.stateDir))) {
        lockedAgain = true;
        continue;
      }
      view?.done();
      throw error;
    }
  }
  const agent = running;
  try {
    const result = await inProcess(agent.operations(onProgress));
    // What the operation journaled (repairs, a full mirror) leaves before this process does.
    await agent.agent.drain(request.set).catch(async (error: unknown) => {
      const unsent = options.unsentWhenHeld;
      const held = error instanceof SendsHeldError && unsent !== undefined ? await agent.agent.sendsHeldBy(request.set) : undefined;
      if (held && unsent !== undefined) {
        throw new HeldWaitError(typeof unsent === "string" ? unsent : unsent(result, agent.agent.journal.sets.counters(request.set).backlogRecords), held);
      }
      heldSendsSaid(error);
    });
    return result;
  } finally {
    view?.done();
    await agent.stop();
  }
}

/**
 * A wait the set's held sends cut short (another key owns it), under --json: its report on stdout (what a script
 * reads: the owner's key and the way out) and the reason on stderr, exit code 1. Any other error goes on.
 */
export function heldAsJson(error: unknown, json: boolean): number {
  if (!json || !(error instanceof HeldWaitError)) throw error;
  process.stdout.write(`${JSON.stringify(error, null, 2)}\n`);
  process.stderr.write(`tidemark: ${error.message}\n`);
  return 1;
}
