// Which config file a command uses, apart from the config's schema (config.ts):
// `tidemark run` finds it before loading the agent's modules (run.ts).

import { resolve } from "node:path";

export const DEFAULT_CONFIG_FILE = "tidemark.config.json";

/** Which config file a command uses. */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  // An empty variable counts as unset, as shells and CI runners often leave one.
  return resolve(flag ?? (env.TIDEMARK_CONFIG || undefined) ?? DEFAULT_CONFIG_FILE);
}
