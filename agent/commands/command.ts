// What every CLI command provides: its options, its help (with an example),
// and a run that returns the exit code.

import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { didYouMean } from "../suggest.ts";

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
  const options = { ...command.options, help: { type: "boolean", short: "h" } } as const;
  checkArgs(command, options, argv);
  try {
    return parseArgs({ args: argv, options, allowPositionals: command.positionals ?? false, strict: true });
  } catch (error) {
    throw new UsageError(`${(error as Error).message.split("\n")[0]} (see \`tidemark ${command.name} --help\`)`);
  }
}

/** Our own words for what Node's strict parser would refuse: unknown options (with the closest known one), missing values, stray arguments. */
function checkArgs(command: Command, options: ParseArgsOptionsConfig, argv: string[]): void {
  const seeHelp = `see \`tidemark ${command.name} --help\``;
  const { tokens } = parseArgs({ args: argv, options, allowPositionals: true, strict: false, tokens: true });
  const known = Object.keys(options).map((name) => `--${name}`);
  for (const token of tokens) {
    if (token.kind === "positional" && !(command.positionals ?? false)) {
      throw new UsageError(`tidemark ${command.name} takes no argument "${token.value}" (${seeHelp})`);
    }
    if (token.kind !== "option") continue;
    const spec = options[token.name];
    if (spec === undefined) {
      const typed = token.rawName.startsWith("--") ? token.rawName : `-${token.name}`;
      throw new UsageError(`unknown option ${typed} for \`tidemark ${command.name}\`${didYouMean(typed, known, (w) => w)} (${seeHelp})`);
    }
    if (spec.type === "string" && token.value === undefined) throw new UsageError(`option ${token.rawName} needs a value (${seeHelp})`);
    // Node's strict parser calls `--timeout -5` "ambiguous" (a lone "-" it takes as a value): the value may be
    // forgotten (`--label --wait`) or begin with a dash; say both.
    if (spec.type === "string" && token.inlineValue === false && token.value !== undefined && token.value.length > 1 && token.value.startsWith("-")) {
      throw new UsageError(`option ${token.rawName} needs a value: did you forget it before ${token.value}? One that begins with a dash goes as ${token.rawName}=${token.value} (${seeHelp})`);
    }
    if (spec.type === "boolean" && token.inlineValue === true) throw new UsageError(`option ${token.rawName} takes no value (${seeHelp})`);
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

/** How often a long-running command checks that the process that started it is still there. */
const PARENT_CHECK_MS = 1_000;

/** The process that started this one, read when the CLI loads: a parent that exits during a slow start still counts. */
const STARTED_BY = process.ppid;

/**
 * Resolves when the process is asked to stop, or when the process that started
 * it exits: Ctrl-C delivered to `npx` (or a script) alone must not leave the
 * command running, orphaned. An orphan is re-parented, so its ppid changes.
 */
export function untilStopped(options: { checkMs?: number } = {}): Promise<NodeJS.Signals | "parent exited"> {
  const parent = STARTED_BY;
  let timer: NodeJS.Timeout | undefined;
  const orphaned = new Promise<"parent exited">((resolve) => {
    timer = setInterval(() => {
      if (process.ppid !== parent) resolve("parent exited");
    }, options.checkMs ?? PARENT_CHECK_MS);
    // The command's own work keeps the process alive, not this check.
    timer.unref();
  });
  return Promise.race([untilSignal(), orphaned]).finally(() => clearInterval(timer));
}
