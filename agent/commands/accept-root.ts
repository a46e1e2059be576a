// `tidemark accept-root SET`: an operator accepts the folder now at a held
// set's root as the set (a new disk, a restored copy, a folder emptied on
// purpose). The agent resumes it within seconds, and its next scan journals
// the real differences, deletes included (agent/set-roots.ts).

import { existsSync } from "node:fs";
import { join } from "node:path";
import { configPath, loadConfig } from "../config.ts";
import { Journal } from "../journal.ts";
import { RootLookProcess } from "../root-look-process.ts";
import { describeHold } from "../set-roots.ts";
import { stringOption, UsageError, type Command } from "./command.ts";

export const acceptRootCommand: Command = {
  name: "accept-root",
  help: `Usage: tidemark accept-root SET [--config FILE] [--json]

Accepts the folder now at SET's root as the set from now on. The agent holds
a set whose root is missing, is another folder than the one it replicated (a
different inode: a new mount, a folder moved in, a symlink pointed elsewhere;
or the same inode with another birth time: the folder deleted and made again),
or is empty while the journal knows files under it (an unmounted disk's mount
point, or everything deleted): it journals nothing of the set, so the target
keeps its last copy, and \`tidemark status\` names the hold. A root that comes
back as it left (remounted, moved back) resumes by itself; accept-root is for
a root that is rightly different now: a new or restored disk, a folder
restored from a copy, or a set whose files were all deleted on purpose.

The folder's identity (device, inode and, where the file system records one,
birth time, of the folder a symlink resolves to) is recorded in the journal
and the hold ends; the running agent resumes the set within seconds (a
stopped one at its next start), and its next scan journals the real
differences between the folder and what was replicated:
files the folder lacks are DELETED on the target (the protection window's
history keeps them restorable). Run it on the source host, with the agent's
config; the folder must be there, readable, and answer within 10 s (one on
a hung network file system fails the command: nothing is recorded).

Options:
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)
  --json          print the set, its root, the identity recorded and the hold it ended as JSON

Examples:
  tidemark status                 # names the held set, e.g. "data: held since ...: the root /mnt/data is empty ..."
  tidemark accept-root data       # the new disk mounted at /mnt/data is the set now
  tidemark accept-root data --json`,
  options: { config: { type: "string" }, json: { type: "boolean" } },
  positionals: true,
  async run(values, positionals) {
    const [set, ...rest] = positionals;
    if (set === undefined || rest.length > 0) throw new UsageError("accept-root takes exactly one set name (see `tidemark accept-root --help`)");
    const config = loadConfig(configPath(stringOption(values.config)));
    const spec = config.sets.find((s) => s.name === set);
    if (!spec) throw new UsageError(`no set named "${set}" in ${config.file} (sets: ${config.sets.map((s) => s.name).join(", ")})`);
    const { acceptRoot } = await import("../accept-root.ts");
    if (!existsSync(join(config.stateDir, "journal.db"))) throw new UsageError(`no journal in ${config.stateDir}: the agent never ran there, and a set it never ran is not held`);
    // The root is looked at in a process of its own, within a time limit: one on a hung network file system fails
    // the command instead of hanging it (root-look-process.ts).
    const look = new RootLookProcess(1);
    // As a reader: a running agent's content files are its own to clean up.
    const journal = Journal.open(config.stateDir, { reader: true, lookRoot: look });
    let accepted;
    try {
      accepted = await acceptRoot(journal, spec);
    } finally {
      journal.close();
      look.close();
    }
    if (values.json === true) {
      process.stdout.write(`${JSON.stringify({ set, root: spec.root, identity: accepted.identity, previous: accepted.previous ?? null }, null, 2)}\n`);
      return 0;
    }
    const { identity, previous } = accepted;
    const was = previous ? `; it was held (${previous.state}) since ${previous.since}: ${describeHold(previous)}` : "; it was not held";
    process.stdout.write(
      `set ${set}: accepted ${identity.realPath} (device ${identity.dev}, inode ${identity.ino}) as its root${was}\nthe agent resumes the set within seconds (a stopped agent at its next start); its next scan journals the differences, deletes included\n`,
    );
    return 0;
  },
};
