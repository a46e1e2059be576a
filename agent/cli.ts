#!/usr/bin/env node
// tidemark: the command line. Each command lives in commands/; this file
// only dispatches and turns errors into one line on stderr and an exit code.

import { ConfigError } from "./config.ts";
import { ControlError } from "./control.ts";
import { OperationTimeoutError } from "./operations.ts";
import { parseCommandArgs, UsageError, type Command } from "./commands/command.ts";
import { initCommand } from "./commands/init.ts";
import { localCommand } from "./commands/local.ts";
import { mirrorCommand } from "./commands/mirror.ts";
import { verifyCommand } from "./commands/verify.ts";
import { runCommand } from "./commands/run.ts";
import { statusCommand } from "./commands/status.ts";
import { QuiesceError, taskCommand, tasksCommand } from "./commands/task.ts";
import { pruneCommand, restoreCommand, snapshotsCommand } from "./commands/snapshots.ts";
import { TasksDisabledError } from "./operations.ts";
import { RestoreError } from "./restore.ts";
import { SnapshotError } from "../lambdas/tasks/snapshots.ts";
import { UnreachableError } from "./preflight.ts";

const COMMANDS: readonly Command[] = [
  localCommand,
  initCommand,
  runCommand,
  statusCommand,
  taskCommand,
  tasksCommand,
  snapshotsCommand,
  restoreCommand,
  pruneCommand,
  mirrorCommand,
  verifyCommand,
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
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) throw new UsageError(`unknown command "${name}" (commands: ${COMMANDS.map((c) => c.name).join(", ")})`);
  const { values, positionals } = parseCommandArgs(command, rest);
  if (values.help === true) {
    process.stdout.write(`${command.help}\n`);
    return 0;
  }
  return command.run(values, positionals);
}

const EXPECTED = [UsageError, ConfigError, UnreachableError, ControlError, OperationTimeoutError, TasksDisabledError, QuiesceError, RestoreError, SnapshotError];

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const err = error instanceof Error ? error : new Error(String(error));
    const known = EXPECTED.some((kind) => err instanceof kind);
    // One line, whatever the message quoted (a JSON parser quotes the input, newlines and all).
    const reason = (known ? err.message : `${err.name}: ${err.message}`).replace(/\s*\n\s*/g, " ");
    process.stderr.write(`tidemark: ${reason}\n`);
    if (!known && process.env.TIDEMARK_DEBUG) process.stderr.write(`${err.stack}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  },
);
