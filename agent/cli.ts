#!/usr/bin/env node
// tidemark: the command line. Each command lives in commands/; this file
// only dispatches and turns errors into one line on stderr and an exit code.

import { enableCompileCache } from "node:module";
import { parseCommandArgs, UsageError, type Command } from "./commands/command.ts";
import { didYouMean } from "./suggest.ts";

// Compiled code (and the sources with their types stripped) kept on disk between runs, under the OS's temporary
// folder: `tidemark run` loads ~0.25 s faster (0.7 s to 0.45 s of modules before its first request). Node checks
// each entry against the source, and NODE_DISABLE_COMPILE_CACHE=1 turns it off. The bin (bin/tidemark.js) turns it on
// before this file is read; here it covers `node agent/cli.ts`.
enableCompileCache();

// A reader that stops early (`tidemark status | head -1`) closes the pipe: the rest of the output has nowhere to go,
// which is no failure of the command's, so it finishes with its own exit code instead of a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
  });
}

/**
 * The commands, each loaded only when run: a script calling `tidemark task`
 * should not pay for loading the emulator, the CDK reader and the AWS SDK.
 */
const COMMANDS: readonly { name: string; summary: string; load: () => Promise<Command> }[] = [
  { name: "local", summary: "run the target side (queue, bucket, applier) on this machine, optionally with an agent", load: async () => (await import("./commands/local.ts")).localCommand },
  { name: "init", summary: "write an agent config from the outputs of `cdk deploy`", load: async () => (await import("./commands/init.ts")).initCommand },
  { name: "run", summary: "replicate the configured sets until stopped", load: async () => (await import("./commands/run.ts")).runCommand },
  { name: "status", summary: "show backlog, sent and applied seqs, and sync state per set", load: async () => (await import("./commands/status.ts")).statusCommand },
  { name: "task", summary: "insert a task marker: an application-consistent recovery point on the target", load: async () => (await import("./commands/task.ts")).taskCommand },
  { name: "tasks", summary: "list a set's task markers and what became of them", load: async () => (await import("./commands/task.ts")).tasksCommand },
  { name: "snapshots", summary: "list a set's snapshots (recovery points taken at task markers)", load: async () => (await import("./commands/snapshots.ts")).snapshotsCommand },
  { name: "restore", summary: "rebuild a snapshot of a set, or any moment of the last days, into a folder", load: async () => (await import("./commands/snapshots.ts")).restoreCommand },
  { name: "timeline", summary: "show the moments of a set that restore (restore --at) and the markers among them", load: async () => (await import("./commands/timeline.ts")).timelineCommand },
  { name: "drill", summary: "restore a recovery point into a scratch folder, check it, time it (RTO/RPO)", load: async () => (await import("./commands/drill.ts")).drillCommand },
  { name: "prune", summary: "delete old snapshots of a set and the content only they kept", load: async () => (await import("./commands/snapshots.ts")).pruneCommand },
  { name: "mirror", summary: "mirror a set to the target again: full, diff or checksum", load: async () => (await import("./commands/mirror.ts")).mirrorCommand },
  { name: "accept-root", summary: "accept the folder now at a held set's root (a new disk, a restored copy) as the set", load: async () => (await import("./commands/accept-root.ts")).acceptRootCommand },
  { name: "adopt", summary: "make this host the owner of a set on the target (an operator's action)", load: async () => (await import("./commands/adopt.ts")).adoptCommand },
  { name: "verify", summary: "compare a set on the target with the source, and optionally repair it", load: async () => (await import("./commands/verify.ts")).verifyCommand },
  { name: "service", summary: "install the agent as a systemd service (dedicated user, restart on failure, hardened)", load: async () => (await import("./commands/service.ts")).serviceCommand },
  { name: "doctor", summary: "check this host's setup: config, credentials, queue, bucket, permissions, limits, clock", load: async () => (await import("./commands/doctor.ts")).doctorCommand },
];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return `tidemark: replicate a server's files to AWS in write order, with task markers

Usage: tidemark <command> [options]

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`).join("\n")}

Run \`tidemark <command> --help\` for a command's options and examples.

Example (everything on this machine):
  tidemark local --source ~/important-folder`;
}

/**
 * Set once the command is known, before its arguments are checked: --json given to a command that takes it. Its
 * failures (usage errors included) are then printed on stdout as one JSON object too (errorReport).
 */
let failAsJson = false;

/** Whether --json is among a command's options as typed (not after a `--`, which ends them). */
function jsonGiven(args: string[]): boolean {
  const end = args.indexOf("--");
  return (end < 0 ? args : args.slice(0, end)).includes("--json");
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`${overview()}\n`);
    return name === undefined ? 2 : 0;
  }
  if (name === "--version") {
    process.stdout.write("tidemark 0.1.0\n");
    return 0;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (!entry) {
    const names = COMMANDS.map((c) => c.name);
    const hint = name.startsWith("-") ? didYouMean(name, ["--help", "--version"], (w) => w) : didYouMean(name, names);
    throw new UsageError(`unknown command "${name}"${hint} (commands: ${names.join(", ")}; see \`tidemark --help\`)`);
  }
  const command = await entry.load();
  failAsJson = command.options.json !== undefined && jsonGiven(rest);
  const { values, positionals } = parseCommandArgs(command, rest);
  if (values.help === true) {
    process.stdout.write(`${command.help}\n`);
    return 0;
  }
  return command.run(values, positionals);
}

/** Errors that are the user's to fix, by name (their classes live in modules loaded on demand): one line, no stack. */
const EXPECTED = new Set([
  "UsageError",
  "ConfigError",
  "StateLockedError",
  "UnreachableError",
  "ControlError",
  "OperationTimeoutError",
  "TargetMismatchError",
  "TasksDisabledError",
  "QuiesceError",
  "RestoreError",
  "SnapshotError",
  "VolumeError",
  "ServiceError",
  "DrillError",
  "RecoveryPointError",
  "JournalCorruptError",
  "JournalUnreadableError",
  "JournalDiskFullError",
  "OwnerKeyError",
  "HistoryError",
  "TimeSpecError",
  "PortInUseError",
  "SendsHeldError",
  "HeldWaitError",
  "RecordNotSentError",
  "RootHeldError",
  "AcceptRootError",
]);

/**
 * A failure under --json, as a script reads it: the shape `--json` already gives a held wait's failure (HeldWaitError,
 * held-wait.ts), `error` a stable code (the error's kind: "usage", "config", "unreachable", ...; "internal" for an
 * error nobody expected), `message` the line stderr has, and the exit code.
 */
function errorReport(err: Error, message: string, exitCode: number): Record<string, unknown> {
  // An error with a report of its own (a held wait's: the owner's key and the way out) keeps it.
  const own: unknown = "toJSON" in err && typeof err.toJSON === "function" ? err.toJSON() : undefined;
  if (typeof own === "object" && own !== null && "error" in own && typeof own.error === "string") return { ...own, message, exitCode };
  const kind = EXPECTED.has(err.name)
    ? err.name
        .replace(/Error$/, "")
        .replace(/([a-z0-9])([A-Z])/g, "$1-$2")
        .toLowerCase()
    : "internal";
  return { error: kind, message, exitCode };
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const err = error instanceof Error ? error : new Error(String(error));
    const known = EXPECTED.has(err.name);
    // One line, whatever the message quoted (a JSON parser quotes the input, newlines and all).
    const reason = (known ? err.message : `${err.name}: ${err.message}`).replace(/\s*\n\s*/g, " ");
    const exitCode = err instanceof UsageError ? 2 : 1;
    // The human line stays on stderr; stdout, which a script parses, gets the same as JSON.
    if (failAsJson) process.stdout.write(`${JSON.stringify(errorReport(err, reason, exitCode), null, 2)}\n`);
    process.stderr.write(`tidemark: ${reason}\n`);
    if (!known && process.env.TIDEMARK_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exitCode = exitCode;
  },
);
