// The set a command names, checked before its config is loaded: without a
// config in the current folder, `tidemark task` (no set) said "no config file"
// (exit 1) where the usage error (exit 2) says what the command needs.

import { configPath, loadConfig } from "../config.ts";
import { UsageError } from "./command.ts";

/**
 * The set named on the command line; a usage error when none is, listing the config's sets when it loads (and
 * saying nothing of a config that does not: the missing set is the error). Whether the config has such a set is
 * checkSet's, once the config is loaded.
 */
export function setArgument(set: string | undefined, command: string, configFlag: string | undefined): string {
  if (set !== undefined) return set;
  let sets = "";
  try {
    const { sets: configured } = loadConfig(configPath(configFlag));
    sets = ` (sets: ${configured.map((s) => s.name).join(", ")})`;
  } catch {
    // No config (or a broken one): the usage error alone; the command says the config's problem once it has its set.
  }
  throw new UsageError(`name the set to ${command}${sets}`);
}
