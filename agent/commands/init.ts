// `tidemark init`: an agent config from the outputs of `cdk deploy
// --outputs-file`, so an operator never copies a queue URL by hand.

import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs";
import { dirname, relative, resolve } from "node:path";
import { hostRoleOutput, STACK_OUTPUT } from "../../contract/stack-outputs.ts";
import { setNameProblem } from "../../contract/paths.ts";
import { ConfigError, ConfigSchema, configPath, type ConfigFile } from "../config.ts";
import { stringOption, UsageError, type Command } from "./command.ts";
import { loadOrCreateOwnerKey } from "../owner-key.ts";
import { createLogger } from "../log.ts";

/** The outputs of one deployed tidemark stack. */
export interface StackOutputs {
  readonly stack: string;
  readonly queueUrl: string;
  readonly bucket: string;
  readonly region: string;
  readonly agentPolicyArn?: string;
  readonly agentRoleArn?: string;
  readonly tasksEnabled: boolean;
  readonly eventBus?: string;
}

/** Reads a `cdk deploy --outputs-file` file: `{ "<stack>": { "<output>": "<value>" } }`. */
export function readStackOutputs(file: string, stack?: string, host?: string): StackOutputs {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ConfigError(`no outputs file at ${file} (write one with \`npx cdk deploy --outputs-file ${file}\`)`);
    throw new ConfigError(`cannot read outputs file ${file}: ${(error as Error).message}`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ConfigError(`outputs file ${file} is not what \`cdk deploy --outputs-file\` writes (an object of stacks)`);
  }
  const stacks = Object.entries(json as Record<string, unknown>).filter(
    (entry): entry is [string, Record<string, unknown>] => typeof entry[1] === "object" && entry[1] !== null && STACK_OUTPUT.queueUrl in entry[1],
  );
  let chosen: [string, Record<string, unknown>] | undefined;
  if (stack !== undefined) {
    chosen = stacks.find(([name]) => name === stack);
    if (!chosen) throw new ConfigError(`outputs file ${file} has no tidemark stack named "${stack}" (it has: ${stacks.map(([n]) => n).join(", ") || "none"})`);
  } else if (stacks.length === 1) {
    chosen = stacks[0];
  } else if (stacks.length === 0) {
    throw new ConfigError(`outputs file ${file} holds no tidemark stack (no stack has a ${STACK_OUTPUT.queueUrl} output)`);
  } else {
    throw new ConfigError(`outputs file ${file} holds several tidemark stacks (${stacks.map(([n]) => n).join(", ")}): pick one with --stack`);
  }
  const [name, outputs] = chosen as [string, Record<string, unknown>];
  const required = (key: string): string => {
    const value = outputs[key];
    if (typeof value !== "string" || value === "") throw new ConfigError(`outputs file ${file}: stack ${name} has no ${key} output`);
    return value;
  };
  const optional = (key: string): string | undefined => (typeof outputs[key] === "string" && outputs[key] !== "" ? (outputs[key] as string) : undefined);
  const agentPolicyArn = optional(STACK_OUTPUT.agentPolicyArn);
  const agentRoleArn = optional(STACK_OUTPUT.agentRoleArn);
  const eventBus = optional(STACK_OUTPUT.eventBus);
  const hostRoleArn = host !== undefined ? optional(hostRoleOutput(host)) : undefined;
  if (host !== undefined && hostRoleArn === undefined) {
    throw new ConfigError(`outputs file ${file}: stack ${name} has no role for host "${host}" (no ${hostRoleOutput(host)} output; hosts come from the stack's tidemark:hosts setting)`);
  }
  return {
    stack: name,
    queueUrl: required(STACK_OUTPUT.queueUrl),
    bucket: required(STACK_OUTPUT.bucket),
    region: required(STACK_OUTPUT.region),
    ...(agentPolicyArn ? { agentPolicyArn } : {}),
    ...(hostRoleArn ? { agentRoleArn: hostRoleArn } : agentRoleArn ? { agentRoleArn } : {}),
    tasksEnabled: optional(STACK_OUTPUT.tasksEnabled) !== "false",
    ...(eventBus ? { eventBus } : {}),
  };
}

/** `NAME=PATH` into a set, the folder checked now rather than at `tidemark run`. */
export function parseSetArgument(argument: string): { name: string; path: string } {
  const at = argument.indexOf("=");
  if (at <= 0 || at === argument.length - 1) throw new UsageError(`--set wants NAME=PATH, got "${argument}"`);
  const name = argument.slice(0, at);
  const path = resolve(argument.slice(at + 1));
  const problem = setNameProblem(name);
  if (problem) throw new UsageError(`--set ${argument}: ${problem}`);
  let isDirectory: boolean;
  try {
    isDirectory = statSync(path).isDirectory();
  } catch (error) {
    throw new UsageError(`--set ${argument}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  if (!isDirectory) throw new UsageError(`--set ${argument}: ${path} is not a folder`);
  return { name, path };
}

export const initCommand: Command = {
  name: "init",
  help: `Usage: tidemark init --cdk-outputs FILE --set NAME=PATH [--set NAME=PATH ...]
                     [--stack NAME] [--host NAME] [--config FILE] [--state-dir DIR]
                     [--force] [--json]

Writes an agent config (queue URL, bucket and region of the deployed stack,
and the folders to protect) from the file that
\`npx cdk deploy --outputs-file FILE\` wrote. The config goes where every
other command looks for it: --config FILE, else $TIDEMARK_CONFIG, else
./tidemark.config.json. An existing config is left alone unless --force.

Options:
  --cdk-outputs FILE  the outputs file of \`cdk deploy --outputs-file\`
  --set NAME=PATH     a set to replicate: its name and its folder (repeatable)
  --stack NAME        the stack to use when the file holds several
  --host NAME         this host's name in the stack's tidemark:hosts: the agent
                      runs as that host's role, which reaches only its sets
  --config FILE       where to write the config
  --state-dir DIR     the agent's journal folder (default: tidemark-state next to the config)
  --force             replace an existing config
  --json              print what was written as JSON

Examples:
  tidemark init --cdk-outputs cdk-outputs.json --set docs=/srv/docs --set www=/var/www
  # cdk-outputs.json comes from: npx cdk deploy --outputs-file cdk-outputs.json
  tidemark init --cdk-outputs cdk-outputs.json --host web-1 --set www=/var/www
  tidemark init --cdk-outputs cdk-outputs.json --stack TidemarkProd --set db=/var/lib/app \
                --config /etc/tidemark.json --state-dir /var/lib/tidemark`,
  options: {
    "cdk-outputs": { type: "string" },
    set: { type: "string", multiple: true },
    stack: { type: "string" },
    host: { type: "string" },
    config: { type: "string" },
    "state-dir": { type: "string" },
    force: { type: "boolean" },
    json: { type: "boolean" },
  },
  async run(values) {
    const outputsFile = stringOption(values["cdk-outputs"]);
    if (outputsFile === undefined) throw new UsageError("--cdk-outputs FILE is required (see `tidemark init --help`)");
    const setArguments = (values.set as string[] | undefined) ?? [];
    if (setArguments.length === 0) throw new UsageError("at least one --set NAME=PATH is required");
    const sets = setArguments.map(parseSetArgument);
    const duplicate = sets.find((set, i) => sets.findIndex((other) => other.name === set.name) !== i);
    if (duplicate) throw new UsageError(`set "${duplicate.name}" is given twice`);

    const outputs = readStackOutputs(resolve(outputsFile), stringOption(values.stack), stringOption(values.host));
    const file = configPath(stringOption(values.config));
    if (existsSync(file) && values.force !== true) throw new ConfigError(`${file} already exists; pass --force to replace it`);
    const stateFlag = stringOption(values["state-dir"]);
    const config: ConfigFile = {
      region: outputs.region,
      queueUrl: outputs.queueUrl,
      bucket: outputs.bucket,
      stateDir: stateFlag !== undefined ? relative(dirname(file), resolve(stateFlag)) || "." : "tidemark-state",
      sets,
      tasks: { enabled: outputs.tasksEnabled, ...(outputs.eventBus ? { eventBus: outputs.eventBus } : {}) },
    };
    const checked = ConfigSchema.safeParse(config);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      throw new ConfigError(`the outputs of stack ${outputs.stack} make no valid config: ${issue?.path.join(".")}: ${issue?.message}`);
    }
    const temp = `${file}.tmp`;
    writeFileSync(temp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    renameSync(temp, file);
    // The host's signing key now, so that the first message of each set registers this host as its owner.
    const { key } = loadOrCreateOwnerKey(resolve(dirname(file), config.stateDir), { log: createLogger() });

    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ config: file, stack: outputs.stack, ...config, agentPolicyArn: outputs.agentPolicyArn ?? null, ownerKeyId: key.keyId }, null, 2)}\n`);
      return 0;
    }
    const lines = [
      `wrote ${file} for stack ${outputs.stack} (${outputs.region})`,
      ...sets.map((set) => `  set ${set.name}  ${set.path}`),
      `this host's signing key: ${key.keyId} (in the state folder; the target takes each new set's changes from this key only)`,
      "Next:",
      outputs.agentRoleArn
        ? `  run the agent as the role ${outputs.agentRoleArn}`
        : `  attach the policy ${outputs.agentPolicyArn ?? "(AgentPolicyArn output)"} to the identity the agent runs as`,
      `  tidemark run${stringOption(values.config) !== undefined ? ` --config ${file}` : ""}`,
    ];
    process.stdout.write(`${lines.join("\n")}\n`);
    return 0;
  },
};
