// What every CLI command provides: its options, its help (with an example),
// and a run that returns the exit code.

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

export class UsageError extends Error {
  override name = "UsageError";
}

export interface Command {
  readonly name: string;
  /** Full --help text: usage, options, examples. */
  readonly help: string;
  readonly options: ParseArgsOptionsConfig;
  /** Whether positional arguments are accepted. */
  readonly positionals?: boolean;
  run(values: Record<string, string | boolean | string[] | boolean[] | undefined>, positionals: string[]): Promise<number>;
}

export function parseCommandArgs(command: Command, argv: string[]) {
  try {
    return parseArgs({
      args: argv,
      options: { ...command.options, help: { type: "boolean", short: "h" } },
      allowPositionals: command.positionals ?? false,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split("\n")[0]} (see \`tidemark ${command.name} --help\`)`);
  }
}

export function stringOption(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

/** Resolves when the process is asked to stop (SIGINT, SIGTERM). */
export function untilSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const done = (signal: NodeJS.Signals) => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve(signal);
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
  });
}
