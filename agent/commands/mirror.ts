// `tidemark mirror`: bring a set's target in line with the source by one of
// the three mirror modes.

import { configPath, loadConfig } from "../config.ts";
import { formatBytes } from "../format.ts";
import { MIRROR_MODES, runMirror, type MirrorMode, type MirrorResult } from "../operations.ts";
import { stringOption, UsageError, type Command } from "./command.ts";
import { checkSet, heldAsJson, operate } from "./operate.ts";
import { setArgument } from "./set-argument.ts";

export const mirrorCommand: Command = {
  name: "mirror",
  help: `Usage: tidemark mirror SET --mode full|diff|checksum [--json] [--config FILE]

Modes:
  full      send every file again (behind a resync record), then remove or
            report what the target holds beyond the source
  diff      compare sizes, mtimes and hashes with the target; send what is
            missing or different
  checksum  hash every file on both sides; send only the blocks that differ
            (finds content changed behind an unchanged size and mtime)
A volume set is always mirrored in full, whatever the mode: every block read
and hashed, and sent again over the target's cleared block map.

Orphans (on the target, not on the source) are reported, deleted or moved
aside as the config's "orphans" setting says. A progress bar shows on a
terminal; plain lines otherwise. Uses the running agent when there is one
(one still starting is waited for, up to 60 s), else starts one for the
duration (another command's own agent is waited for to end first, up to
5 min). Exits 1 at once when another key owns the set on the target
(this host's sends are held until \`tidemark adopt SET\`; --json prints
"error": "sends-held"), also when that is first found at the final send
(what it journaled stays unsent until then).

Options:
  --mode MODE     full, diff or checksum (required)
  --json          print the result as JSON
  --config FILE   config file (default: $TIDEMARK_CONFIG, else ./tidemark.config.json)

Examples:
  tidemark mirror docs --mode diff
  tidemark mirror vm-images --mode checksum
  tidemark mirror docs --mode full --json`,
  positionals: true,
  options: { mode: { type: "string" }, json: { type: "boolean" }, config: { type: "string" } },
  async run(values, positionals) {
    const mode = stringOption(values.mode);
    if (mode === undefined || !(MIRROR_MODES as readonly string[]).includes(mode)) {
      throw new UsageError(`--mode must be one of ${MIRROR_MODES.join(", ")}${mode === undefined ? "" : `, got "${mode}"`}`);
    }
    setArgument(positionals[0], "mirror", stringOption(values.config));
    const config = loadConfig(configPath(stringOption(values.config)));
    const set = checkSet(config, positionals[0], "mirror");
    const json = values.json === true;
    let result: MirrorResult;
    try {
      result = await operate<MirrorResult>(config, "/mirror", { set, mode }, (deps) => runMirror(deps, set, mode as MirrorMode, config.orphans), { quiet: json, unsentWhenHeld: "the changes this mirror journaled" });
    } catch (error) {
      return heldAsJson(error, json);
    }
    if (json) {
      process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
      return 0;
    }
    const lines = [`set ${set}: ${mode} mirror done`];
    if (result.scan) lines.push(`  ${result.scan.entries} entries scanned, ${result.scan.changes} changes (${formatBytes(result.scan.bytes)}) journaled`);
    if (result.verify) {
      const { report, repaired } = result.verify;
      lines.push(`  target at seq ${report.seq}: ${report.missing.length} missing, ${report.different.length} different, ${report.extra.length} extra (orphans: ${report.orphans})`);
      lines.push(`  ${repaired} changes journaled to repair the target`);
    }
    process.stdout.write(`${lines.join("\n")}\n`);
    return 0;
  },
};
