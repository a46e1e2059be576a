// Shared by `tidemark verify` and `tidemark mirror`: ask the running agent
// over its control socket, or, when none runs, do the work in this process
// (the agent started, the operation run, what it journaled sent, stopped).

import { setTimeout as sleep } from "node:timers/promises";
import type { AgentConfig } from "../config.ts";
import { callControl, controlSocketPath, NoAgentError } from "../control.ts";
import { HeldWaitError } from "../held-wait.ts";
import { SendsHeldError } from "../owner-hold.ts";
import type { OperationDeps, Progress } from "../operations.ts";
import { createProgressView } from "../progress.ts";
import { CommandAgentBusyError, RUN_COMMAND } from "../command-agent.ts";
import { commandAgentGone, commandAgentHolds, commandWaits, refusedBy, type CommandWaits } from "../command-agent-wait.ts";
import { createLogger, silentLogger } from "../log.ts";
import { sendKeptDrillReports } from "../drill-kept.ts";
import type { RunningAgent } from "../runtime.ts";
import { AgentStartTimeoutError, STARTING_AGENT_WAIT_MS, startingAgent, startingAgentAnswers } from "../starting-agent.ts";
import { AGENT_POLL_MS, lockOwner, StateLockedError, type LockOwner } from "../state-lock.ts";
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

/** The one stderr line while a command waits for another command's own agent to end. */
function heldOnce(stateDir: string): (owner: LockOwner & { command: string }, seconds: number) => void {
  let said = false;
  return (owner, seconds) => {
    if (said) return;
    said = true;
    process.stderr.write(`tidemark: waiting up to ${seconds} s for \`${owner.command}\` (pid ${owner.pid}) to finish with ${stateDir}: its own agent serves only it and ends by itself\n`);
  };
}

/** What the state lock of the agent a command starts for itself says took it (command-agent.ts). */
function commandOf(route: string): string {
  return `tidemark ${route === "/drill-report" ? "drill" : route.slice(1)}`;
}

/**
 * Before a command's own side effects (task's --quiesce stops a database): waits for an agent starting on the state
 * folder to answer, or for another command's own agent to end, and refuses at once a lock the command could neither
 * wait for nor take (another host's, a process whose start is unknown). With no agent, the command starts its own
 * later (operate, given the deadlines returned: one for both waits).
 */
export async function agentReady(config: AgentConfig, quiet: boolean): Promise<CommandWaits> {
  const waits = commandWaits();
  const onWait = quiet ? {} : { onWait: saidOnce(config.stateDir) };
  for (let pass = 0; ; pass += 1) {
    // Each pass follows a lock taken again between two looks: bounded by the wait for a starting agent.
    if (pass > 0 && Date.now() >= waits.starting) throw new AgentStartTimeoutError(`the agent on ${config.stateDir} did not answer in time (the state folder was taken again between two looks); see \`tidemark status\``);
    const answers = await startingAgentAnswers(config.stateDir, { deadline: waits.starting, ...onWait });
    if (await commandAgentGone(config.stateDir, waits, quiet ? undefined : heldOnce(config.stateDir))) return waits;
    const owner = lockOwner(config.stateDir);
    // `tidemark run` took the state folder once another command's agent ended (between the two looks): wait for it.
    if (!answers && startingAgent(owner)) continue;
    // Another command's own agent took it just after the look found none (cron's second \`tidemark task\`): wait for it.
    if (!answers && commandAgentHolds(owner)) continue;
    // Another command's own agent answers too, and refuses the request (command-agent.ts).
    if (owner !== undefined && (!answers || owner.command !== RUN_COMMAND)) throw refusedBy(config.stateDir, owner);
    return waits;
  }
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
    /** The command's deadlines when it waited already (agentReady); fresh ones otherwise. */
    waits?: CommandWaits;
  },
): Promise<T> {
  const view = options.quiet ? undefined : createProgressView({ tty: process.stderr.isTTY === true, write: (text) => process.stderr.write(text) });
  const onProgress = (progress: Progress) => view?.update(progress);
  // One set of deadlines for every wait below: an agent that answers and then stops (a crash loop) cannot keep the
  // command, nor can other commands' agents taking the state folder one after another.
  const waits = options.waits ?? commandWaits();
  const onWait = options.quiet ? undefined : saidOnce(config.stateDir);
  const onHeld = options.quiet ? undefined : heldOnce(config.stateDir);
  let lockedAgain = false;
  // Why the last pass went round again, said should the deadline pass.
  let again = "";
  let running: RunningAgent;
  for (let pass = 0; ; pass += 1) {
    if (pass > 0 && Date.now() >= waits.starting) {
      view?.done();
      throw new AgentStartTimeoutError(`the agent on ${config.stateDir} did not take the request in time (${again}); see \`tidemark status\``);
    }
    try {
      const result = (await callControl(controlSocketPath(config.stateDir), route, request, (event) => onProgress(event as Progress))) as T;
      view?.done();
      return result;
    } catch (error) {
      // Another command's own agent answered and refused: wait for it to end, then ask again (or start this one's own).
      const busy = error instanceof CommandAgentBusyError;
      const holder = busy ? lockOwner(config.stateDir) : undefined;
      if (busy && holder === undefined) {
        // It has just released the lock (or its lock cannot be read): ask again, not at once.
        await sleep(AGENT_POLL_MS);
        again = "another command's agent refused it, its lock not readable";
        continue;
      }
      if (busy && startingAgent(holder)) {
        // It ended and `tidemark run` took the state folder since: ask that one (waited for below while it starts).
        again = "another command's agent refused it, then `tidemark run` took the state folder";
        continue;
      }
      if (busy && (await commandAgentGone(config.stateDir, waits, onHeld).catch(done(view)))) {
        again = "another command's agent held the state folder, then it was taken again";
        continue;
      }
      if (!(error instanceof NoAgentError)) {
        view?.done();
        throw error;
      }
    }
    try {
      // An agent still starting holds the state lock before its socket listens: it is the one to ask, not a second agent.
      if (await startingAgentAnswers(config.stateDir, { deadline: waits.starting, ...(onWait ? { onWait } : {}) })) {
        again = "its control socket answered, then was gone";
        continue;
      }
      // Loaded only now: with an agent running, a command never pays for the SDK, the watcher and the journal.
      const { startAgent } = await import("../runtime.ts");
      // Silent, but for a state folder found copied: this host's key is made anew then, and its sends held.
      running = await startAgent(config, silentLogger, { scheduleDrills: false, command: commandOf(route), ownerKeyLog: createLogger({ level: "warn" }) });
      break;
    } catch (error) {
      // The lock was free, then an agent starting (a service restarted) took it first: wait for that one, once.
      if (error instanceof StateLockedError && !lockedAgain && startingAgent(lockOwner(config.stateDir))) {
        lockedAgain = true;
        again = "an agent took the state lock just before this command's own start, then did not take the request";
        continue;
      }
      // Another command's own agent holds it (its socket not listening yet, or it took the lock first): wait for it.
      if (error instanceof StateLockedError && commandAgentHolds(lockOwner(config.stateDir))) {
        if (await commandAgentGone(config.stateDir, waits, onHeld).catch(done(view))) {
          again = "another command's agent held the state folder, then it was taken again";
          continue;
        }
      }
      view?.done();
      const owner = lockOwner(config.stateDir);
      throw error instanceof StateLockedError && owner !== undefined ? refusedBy(config.stateDir, owner) : error;
    }
  }
  const agent = running;
  try {
    // Drill reports of the set no agent took in time (drill-kept.ts) leave with this command's own work.
    await sendKeptDrillReports(config.stateDir, [request.set], (set, report) => agent.agent.journalDrill(set, report));
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

/** Closes the progress view before a wait's failure goes on. */
function done(view: { done(): void } | undefined): (error: unknown) => never {
  return (error) => {
    view?.done();
    throw error;
  };
}

/**
 * A wait the set's held sends cut short (another key owns it), under --json: its report on stdout (what a script
 * reads: the owner's key and the way out) and the reason on stderr, exit code 1. Any other error goes on.
 */
export function heldAsJson(error: unknown, json: boolean): number {
  if (!json || !(error instanceof HeldWaitError)) throw error;
  // The shape of every --json failure (cli.ts errorReport), with the hold's details.
  process.stdout.write(`${JSON.stringify({ ...error.toJSON(), exitCode: 1 }, null, 2)}\n`);
  process.stderr.write(`tidemark: ${error.message}\n`);
  return 1;
}
