// `tidemark adopt SET`: moves a set to this host (DESIGN 8). An operator's
// action on the target: it writes state/<set>/owner.json, which an agent's
// own credentials may not write on AWS.

import { configPath, loadConfig } from "../config.ts";
import { createLogger } from "../log.ts";
import { loadOrCreateOwnerKey } from "../owner-key.ts";
import { stringOption, UsageError, type Command } from "./command.ts";
import { withTargetStore } from "./target-store.ts";

export const adoptCommand: Command = {
  name: "adopt",
  help: `Usage: tidemark adopt SET [--profile NAME] [--config FILE] [--json]

Makes this host the owner of SET on the target: from now on the target takes
the set's changes only when they are signed by this host's key (owner.key in
the state folder, created if missing), and refuses those of the host that
owned it before. Run it on the new host, with credentials that may write the
bucket's state/ prefix: on AWS an operator's role or profile, not the agent's
(the agent's policy cannot write there, so a host cannot take a set by itself).
The target's checkpoint of the set restarts: the set shows out of sync until
this host's agent has mirrored it once, which \`tidemark run\` does when it
starts; start (or restart) it after the adoption. That mirror sends only what
the target does not hold already: each file is compared with the target's
copy by SHA-256 and size first.

Use it to move a set to a new or rebuilt host, after a lost state folder (a
new key), on a host whose state folder was found to be a copy of another
host's (its key made anew, its sends held: see \`tidemark status\`) when it
replaces that host, on the host that should own a set the target holds for
two writers on one journal (two-writers in \`tidemark status\`: stop the
other host's agent first; the adoption ends the hold), or to register the
owner of a set replicated before owners were.

Options:
  --profile NAME  the AWS profile with the right to write state/ (sets AWS_PROFILE)
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)
  --json          print the new and the previous owner as JSON

Examples:
  tidemark adopt www --profile tidemark-operator
  AWS_PROFILE=tidemark-operator tidemark adopt db --json`,
  options: { profile: { type: "string" }, config: { type: "string" }, json: { type: "boolean" } },
  positionals: true,
  async run(values, positionals) {
    const [set, ...rest] = positionals;
    if (set === undefined || rest.length > 0) throw new UsageError("adopt takes exactly one set name (see `tidemark adopt --help`)");
    const config = loadConfig(configPath(stringOption(values.config)));
    if (!config.sets.some((s) => s.name === set)) throw new UsageError(`no set named "${set}" in ${config.file} (sets: ${config.sets.map((s) => s.name).join(", ")})`);
    const profile = stringOption(values.profile);
    if (profile !== undefined) process.env.AWS_PROFILE = profile;
    // A copied state folder gets its own key here too: adopting with the original host's key would move nothing.
    const { key } = loadOrCreateOwnerKey(config.stateDir, { log: createLogger() });
    const { adoptSet } = await import("../../lambdas/target/index.ts");
    const adoption = await withTargetStore(config, (store) => adoptSet(store, set, key));
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ set, owner: adoption.owner, previous: adoption.previous ?? null }, null, 2)}\n`);
      return 0;
    }
    const was = adoption.previous ? `; key ${adoption.previous.keyId} is refused from now on` : "";
    process.stdout.write(`set ${set} now belongs to this host (key ${key.keyId})${was}\nthe target waits for this host's mirror of the set: (re)start \`tidemark run\` to send it\n`);
    return 0;
  },
};
