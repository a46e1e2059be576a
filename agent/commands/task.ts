// `tidemark task` (the scripting command, DESIGN 3) and `tidemark tasks`
// (the history of a set's markers).

import { boundChangingWhileRead, boundNotReplicated, TASK_ACTIONS, MAX_TASK_TIMEOUT_SECONDS, DEFAULT_TASK_TIMEOUT_SECONDS, type TaskFields, type TaskResult } from "../../contract/tasks.ts";
import type { QueuedMarker } from "../agent.ts";
import { configPath, loadConfig, type AgentConfig } from "../config.ts";
import { counted, escapeControl, formatBytes, table } from "../format.ts";
import { describeHook, hookSucceeded, runHook, type HookResult } from "../hooks.ts";
import type { SigningKey } from "../../contract/signing.ts";
import { HeldWaitError } from "../held-wait.ts";
import { queueTask, TasksDisabledError } from "../operations.ts";
import { readOwnerKey } from "../owner-key.ts";
import { createProgressView } from "../progress.ts";
import { stringOption, UsageError, type Command } from "./command.ts";
import { agentReady, checkSet, operate } from "./operate.ts";
import { setArgument } from "./set-argument.ts";
import { shortenedWaits } from "../command-agent-wait.ts";
import { withTargetStore } from "./target-store.ts";

/** Exit code of `task --wait` when the task failed, was skipped or timed out. */
export const TASK_NOT_SUCCEEDED = 3;

/** Files named in the warning; the rest are counted. */
const CHANGING_NAMED = 10;

/** What `task` says of files that kept changing while the barrier read them (the snapshot is not exact for them). */
export function changingWhileReadWarning(paths: readonly string[]): string {
  const named = paths.slice(0, CHANGING_NAMED).map((p) => escapeControl(p)).join(", ");
  const more = paths.length > CHANGING_NAMED ? ` and ${paths.length - CHANGING_NAMED} more` : "";
  return `${paths.length} file(s) kept changing while the barrier read them: the snapshot holds them as read, which may be no state they were ever in (stop the application with --quiesce for an exact point): ${named}${more}`;
}

/** The barrier's files that kept changing, in --json: the first MAX_NAMED_PATHS names (as the marker carries them) and how many. */
export function changingWhileReadJson(paths: readonly string[] | undefined): { changingWhileRead?: string[]; changingWhileReadCount?: number } {
  const bounded = boundChangingWhileRead(paths ?? []);
  return bounded ? { changingWhileRead: bounded.paths, changingWhileReadCount: bounded.count } : {};
}

/** What `task` says of the entries the set holds and does not replicate (the marker's snapshot lacks them). */
export function notReplicatedWarning(entries: readonly { path: string; problem: string }[]): string {
  const named = entries.slice(0, CHANGING_NAMED).map((e) => `${escapeControl(e.path)} (${escapeControl(e.problem)})`).join(", ");
  const more = entries.length > CHANGING_NAMED ? ` and ${entries.length - CHANGING_NAMED} more (\`tidemark status\` names them all)` : "";
  return `the set holds ${entries.length} entries it does not replicate: the snapshot lacks them and its task fails (rename them or add them to the set's \`exclude\`): ${named}${more}`;
}

/** A quiesce command failed: no marker was inserted. */
export class QuiesceError extends Error {
  override name = "QuiesceError";
}

function seconds(value: unknown, flag: string, max: number): number | undefined {
  const text = stringOption(value);
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0 || n > max) throw new UsageError(`${flag} must be a number of seconds from 0 to ${max}, got "${text}"`);
  return n;
}

function parseFields(values: Record<string, unknown>): TaskFields {
  const given = stringOption(values.action) ?? "snapshot";
  const action = TASK_ACTIONS.find((a) => a === given);
  if (action === undefined) {
    throw new UsageError(`--action must be one of ${TASK_ACTIONS.join(", ")}, got "${given}"`);
  }
  const timeout = seconds(values.timeout, "--timeout", MAX_TASK_TIMEOUT_SECONDS);
  if (timeout !== undefined && !Number.isInteger(timeout)) throw new UsageError("--timeout must be a whole number of seconds");
  const fn = stringOption(values.function);
  if (action === "invoke" && fn === undefined) throw new UsageError("--action invoke needs --function NAME (a function on the target's allow-list)");
  let input: Record<string, unknown> | undefined;
  const inputText = stringOption(values.input);
  if (inputText !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(inputText);
    } catch {
      throw new UsageError(`--input must be a JSON object, got ${inputText}`);
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new UsageError(`--input must be a JSON object, got ${inputText}`);
    input = Object.fromEntries(Object.entries(parsed));
  }
  const label = stringOption(values.label);
  if (label !== undefined && label.length > 256) throw new UsageError("--label is limited to 256 characters");
  const resource = stringOption(values.resource);
  return {
    action,
    timeoutSeconds: timeout ?? DEFAULT_TASK_TIMEOUT_SECONDS,
    ...(label !== undefined ? { label } : {}),
    ...(fn !== undefined ? { function: fn } : {}),
    ...(input !== undefined ? { input } : {}),
    ...(resource !== undefined ? { resourceArn: resource } : {}),
    ...(values.snapshot === true ? { snapshot: true } : {}),
  };
}

export function describeResult(result: TaskResult): string {
  const took =
    result.finishedAt !== undefined ? ` in ${((Date.parse(result.finishedAt) - Date.parse(result.reachedAt)) / 1000).toFixed(1)} s` : "";
  const outputs = result.outputs;
  const what: string[] = [];
  if (typeof outputs.snapshotId === "string") {
    const size = typeof outputs.bytes === "number" ? `, ${formatBytes(outputs.bytes)}` : "";
    what.push(`snapshot ${outputs.snapshotId}${typeof outputs.files === "number" ? ` (${outputs.files} files${size})` : ""}`);
  }
  if (typeof outputs.backupJobId === "string") what.push(`backup job ${outputs.backupJobId}`);
  if (typeof outputs.eventId === "string") what.push(`event ${outputs.eventId}`);
  if ("response" in outputs) what.push(`response ${JSON.stringify(outputs.response).slice(0, 200)}`);
  const detail = result.error ?? what.join(", ");
  return `task ${result.id} ${result.status}${took}${detail ? `: ${detail}` : ""}`;
}

/** This host's signing key, for telling whether another key owns the set; a wait goes on without it when unreadable. */
function readHostKey(stateDir: string): SigningKey | undefined {
  try {
    return readOwnerKey(stateDir);
  } catch {
    return undefined;
  }
}

async function hook(name: string, command: string | undefined, env: Record<string, string>, quiet: boolean): Promise<HookResult | undefined> {
  if (command === undefined) return undefined;
  return runHook(command, { env, ...(quiet ? {} : { echo: (chunk) => process.stderr.write(chunk) }) });
}

export const taskCommand: Command = {
  name: "task",
  help: `Usage: tidemark task SET [--action snapshot|invoke|event|backup|ebs-snapshot] [--label TEXT]
                     [--quiesce CMD] [--settle SEC] [--resume CMD]
                     [--on-queue CMD] [--on-transmit CMD] [--timeout SEC]
                     [--wait [--wait-timeout SEC]] [--json] [--config FILE]

Inserts a task marker into the set's replication stream. In order:
  1. runs --quiesce CMD (e.g. stop the application) and waits --settle seconds;
  2. scans the whole set and journals every change not captured yet, so all
     the source held at this moment is ahead of the marker (even when the
     watcher is behind, or no agent was running);
  3. journals the marker right after them, and runs --on-queue CMD;
  4. runs --resume CMD (also when a step before it failed).
A set the agent holds (its root missing, swapped for another folder, or
emptied: \`tidemark status\` says HELD) gets no marker: the command fails
naming the hold (exit 1), as the source is no consistent point then.
When the applier reaches the marker, the target holds exactly what the source
held at step 2, and it runs the action there:
  snapshot  a point-in-time manifest, restorable with \`tidemark restore\`;
            checked against a digest of what step 2 saw (a difference fails
            the task, naming the paths), then its content verified (every
            object present, its SHA-256 right); it holds later changes until
            both are done, over as many invocations as that needs (--timeout
            does not cut it short); files that kept changing while step 2
            read them are held as read, possibly torn: \`task\` warns of them
            and the snapshot's task fails naming them (quiesce with --quiesce)
  invoke    calls --function NAME (on the target's allow-list) with the
            marker's context (--input JSON adds to it; --snapshot takes a
            snapshot first and passes its id)
  event     puts an EventBridge event with the marker's context
  backup    starts an AWS Backup job of the target bucket (or --resource ARN)
  ebs-snapshot  (volume sets) an incremental EBS snapshot of the volume: the
            blocks changed since the previous one, with it as parent; it
            holds later changes until it is complete, over as many
            invocations as the upload needs (--timeout does not cut it short)
While the action runs (up to --timeout seconds, default ${DEFAULT_TASK_TIMEOUT_SECONDS}; 0 = do not hold)
the applier applies nothing after the marker; replication on the source goes on.
The result lands in tasks/SET/ID.json on the target (\`tidemark tasks SET\`).

Uses the running agent (tidemark run) when there is one (one still starting
on this host is waited for, up to 60 s, before --quiesce runs), else starts
one for the duration; another command's own agent (a verify, another task)
is waited for to end first, up to 5 min in all (after --quiesce ran, up to
1 min: the service stays stopped meanwhile). Refused at once, before
--quiesce, when another host's agent holds the state folder, and when the
config sets tasks.enabled to false.

Exit code: 0 when the marker was queued (with --wait: and the action
succeeded), ${TASK_NOT_SUCCEEDED} with --wait when it failed, was skipped or timed out, 1 on
errors (a failing --quiesce inserts no marker).

Options:
  --action A        snapshot (default), invoke, event, backup or ebs-snapshot
  --label TEXT      a name for the recovery point (kept in the result and snapshot)
  --quiesce CMD     run before the marker (sh -c); a failure cancels the marker
  --settle SEC      wait this long after --quiesce (default 0)
  --resume CMD      run after the marker is journaled, whatever happened before
  --on-queue CMD    run by the agent once the marker is in its journal
  --on-transmit CMD run by the agent just before the marker is sent
  --timeout SEC     how long the applier holds later changes for the action (0-${MAX_TASK_TIMEOUT_SECONDS})
  --function NAME   invoke: the function to call
  --input JSON      invoke: a JSON object passed as "input"
  --snapshot        invoke, event, backup: take a snapshot first
  --resource ARN    backup: what to back up (default: the target bucket)
  --wait            wait until the target ran the action and print the result
  --wait-timeout SEC  give up waiting after this long (the marker stays queued)
                    --wait also gives up, exit code 1 with the reason, when the
                    target left the marker's journal generation, passed it
                    without a result, or did not move for 10 minutes (not
                    counting while the agent still sends what is ahead of
                    the marker, a large upload, answering, moving and not
                    failing: at most the backlog's time at 64 KiB/s plus 10
                    minutes), and at
                    once when another key owns the set (this host's sends are
                    held until \`tidemark adopt SET\`; --json: "held") or
                    when no agent runs to send the marker (the agent stopped
                    during the wait: it is sent when \`tidemark run\` starts)
  --json            print the outcome as JSON
  --config FILE     config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

The commands get TIDEMARK_SET, TIDEMARK_TASK_ID, TIDEMARK_TASK_SEQ,
TIDEMARK_TASK_ACTION and TIDEMARK_TASK_LABEL in their environment (the
--quiesce command only TIDEMARK_SET: the marker does not exist yet).

Examples:
  tidemark task db --quiesce 'systemctl stop postgresql' --resume 'systemctl start postgresql' --label nightly --wait
  tidemark task www --action event --label deploy-42
  tidemark task vm --action ebs-snapshot --quiesce 'virsh suspend vm1' --resume 'virsh resume vm1' --wait
  tidemark task db --action invoke --function verify-restore --snapshot --timeout 600 --wait --json`,
  positionals: true,
  options: {
    action: { type: "string" },
    label: { type: "string" },
    quiesce: { type: "string" },
    settle: { type: "string" },
    resume: { type: "string" },
    "on-queue": { type: "string" },
    "on-transmit": { type: "string" },
    timeout: { type: "string" },
    function: { type: "string" },
    input: { type: "string" },
    snapshot: { type: "boolean" },
    resource: { type: "string" },
    wait: { type: "boolean" },
    "wait-timeout": { type: "string" },
    json: { type: "boolean" },
    config: { type: "string" },
  },
  async run(values, positionals) {
    const started = Date.now();
    // The arguments first: a usage error is said as one (exit 2) with no config at hand too.
    const named = setArgument(positionals[0], "insert a task into", stringOption(values.config));
    const fields = parseFields(values);
    const settle = seconds(values.settle, "--settle", 3600) ?? 0;
    const waitTimeout = seconds(values["wait-timeout"], "--wait-timeout", 7 * 86_400);
    if (waitTimeout !== undefined && values.wait !== true) throw new UsageError("--wait-timeout goes with --wait");
    const config = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, named, "insert a task into");
    const volume = config.sets.find((s) => s.name === set)?.volume !== undefined;
    if (fields.action === "ebs-snapshot" && !volume) {
      throw new UsageError(`--action ebs-snapshot needs a volume set; "${set}" is a file set (a disk or image is a set of "type": "volume")`);
    }
    const json = values.json === true;
    if (!config.tasks.enabled) {
      throw new TasksDisabledError(
        `task markers are disabled for this agent (tasks.enabled is false in ${config.file}); markers sent to the queue from elsewhere still run on the target`,
      );
    }
    const resume = stringOption(values.resume);
    const hooks: Record<string, HookResult | undefined> = {};
    let queued: QueuedMarker | undefined;
    // Before --quiesce: a starting agent's wait (up to a minute), another command's agent's (up to five) or a refusal must
    // not keep the service stopped.
    const waits = await agentReady(config, json);
    try {
      hooks.quiesce = await hook("quiesce", stringOption(values.quiesce), { TIDEMARK_SET: set }, json);
      if (hooks.quiesce && !hookSucceeded(hooks.quiesce)) throw new QuiesceError(`${describeHook("quiesce", hooks.quiesce)}; no marker was inserted`);
      if (settle > 0) await new Promise((resolve) => setTimeout(resolve, settle * 1000));
      const onQueue = stringOption(values["on-queue"]);
      const onTransmit = stringOption(values["on-transmit"]);
      const request = { fields, ...(onQueue !== undefined ? { onQueue } : {}), ...(onTransmit !== undefined ? { onTransmit } : {}) };
      // The service is stopped from here on: another command's agent that took the folder meanwhile is waited for a minute at most.
      const afterQuiesce = hooks.quiesce ? shortenedWaits(waits) : waits;
      queued = await operate<QueuedMarker>(config, "/task", { set, ...request }, (deps) => queueTask(deps, set, request, config), { quiet: json, waits: afterQuiesce });
      hooks.onQueue = queued.onQueue;
    } finally {
      hooks.resume = await hook("resume", resume, queued ? { TIDEMARK_SET: set, TIDEMARK_TASK_ID: queued.id, TIDEMARK_TASK_SEQ: String(queued.seq) } : { TIDEMARK_SET: set }, json);
      if (hooks.resume && !hookSucceeded(hooks.resume)) process.stderr.write(`tidemark: ${describeHook("resume", hooks.resume)}\n`);
    }
    const journaledMs = Date.now() - started;
    if (!json) {
      process.stdout.write(`task ${queued.id} queued in set ${set} at seq ${queued.seq} (the barrier journaled ${counted(queued.scan.changes, "change")} of ${counted(queued.scan.entries, "entry", "entries")})\n`);
      if (hooks.onQueue && !hookSucceeded(hooks.onQueue)) process.stdout.write(`warning: ${describeHook("on-queue", hooks.onQueue)}\n`);
      if (queued.changingWhileRead) process.stdout.write(`warning: ${changingWhileReadWarning(queued.changingWhileRead)}\n`);
      if (queued.notReplicated) process.stdout.write(`warning: ${notReplicatedWarning(queued.notReplicated)}\n`);
    }
    let result: TaskResult | undefined;
    let held: HeldWaitError | undefined;
    if (values.wait === true) {
      const view = json ? undefined : createProgressView({ tty: process.stderr.isTTY === true, write: (text) => process.stderr.write(text) });
      const marker = queued;
      // Another key owning the set holds this host's sends: the marker would never reach the target.
      const hostKey = readHostKey(config.stateDir);
      try {
        const { waitForTask } = await import("../task-results.ts");
        const { taskWaitChecks } = await import("../task-wait-checks.ts");
        result = await withTargetStore(config, (store) =>
          waitForTask(store, set, marker.id, {
            seq: marker.seq,
            generation: marker.generation,
            ...(waitTimeout !== undefined ? { timeoutMs: waitTimeout * 1000 } : {}),
            ...(view ? { onProgress: (p) => view.update(p) } : {}),
            ...taskWaitChecks(store, config.stateDir, set, marker, hostKey?.keyId),
          }),
        );
      } catch (error) {
        // Under --json the outcome (the marker queued, the wait cut short and why) is printed below.
        if (!json || !(error instanceof HeldWaitError)) throw error;
        held = error;
        process.stderr.write(`tidemark: ${error.message}\n`);
      } finally {
        view?.done();
      }
      if (!json && result) process.stdout.write(`${escapeControl(describeResult(result))}\n`);
    }
    if (json) {
      const summary = (h: HookResult | undefined) => h && { command: h.command, code: h.code, timedOut: h.timedOut, ms: h.ms };
      process.stdout.write(
        `${JSON.stringify(
          {
            set,
            id: queued.id,
            seq: queued.seq,
            journaledMs,
            barrier: {
              entries: queued.scan.entries,
              changes: queued.scan.changes,
              bytes: queued.scan.bytes,
              ...changingWhileReadJson(queued.changingWhileRead),
              ...(queued.notReplicated ? { notReplicated: boundNotReplicated(queued.notReplicated)?.paths, notReplicatedCount: queued.notReplicated.length } : {}),
            },
            hooks: { quiesce: summary(hooks.quiesce), onQueue: summary(hooks.onQueue), resume: summary(hooks.resume) },
            ...(result ? { result } : {}),
            ...(held ? { held } : {}),
          },
          null,
          2,
        )}\n`,
      );
    }
    if (held || (hooks.resume && !hookSucceeded(hooks.resume))) return 1;
    return result && result.status !== "succeeded" ? TASK_NOT_SUCCEEDED : 0;
  },
};

export const tasksCommand: Command = {
  name: "tasks",
  help: `Usage: tidemark tasks SET [--limit N] [--json] [--config FILE]

Lists the task markers the target reached for a set, oldest first: id, seq
(none for markers sent straight to the queue), action, label, status
(running, succeeded, failed, skipped, timed-out), when, and the outcome
(snapshot id, backup job, event id, the invoked function's response, or the
error).

Options:
  --limit N       show the newest N (default 20; 0 = all)
  --json          print the results as a JSON array
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

Examples:
  tidemark tasks db
  tidemark tasks db --json | jq '.[] | select(.status != "succeeded")'`,
  positionals: true,
  options: { limit: { type: "string" }, json: { type: "boolean" }, config: { type: "string" } },
  async run(values, positionals) {
    setArgument(positionals[0], "list the tasks of", stringOption(values.config));
    const config: AgentConfig = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, positionals[0], "list the tasks of");
    const limit = Number(stringOption(values.limit) ?? "20");
    if (!Number.isInteger(limit) || limit < 0) throw new UsageError(`--limit must be a whole number, got "${String(values.limit)}"`);
    const { listTasks } = await import("../../lambdas/target/index.ts");
    const all = await withTargetStore(config, (store) => listTasks(store, set));
    const shown = limit === 0 ? all : all.slice(-limit);
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify(shown, null, 2)}\n`);
      return 0;
    }
    if (shown.length === 0) {
      process.stdout.write(`set ${set} has no task results yet\n`);
      return 0;
    }
    const rows = shown.map((r) => [r.id, r.seq === null ? "-" : String(r.seq), r.action, escapeControl(r.label ?? ""), r.status, r.reachedAt, escapeControl(describeResult(r).replace(/^task \S+ \S+( in [\d.]+ s)?:? ?/, ""))]);
    process.stdout.write(`${table(["TASK", "SEQ", "ACTION", "LABEL", "STATUS", "REACHED", "OUTCOME"], rows)}\n`);
    return 0;
  },
};
